"""A small version of benchmarks/calibration.py: the verdicts on simulated studies with known answers.

Each study: 4 depths, 3 seeds on every point, the bracket design of sweeps/cpu-depth-study.toml, noise
shaped like real trials here; analysed by the real ``analyze``. Fixed seeds: the outcome is the
same on every run. The benchmark runs 100 studies per scenario and prints the rates in the README.
"""

from __future__ import annotations

import pytest

from completep_sweep.analysis import analyze
from completep_sweep.synthetic import simulate_study

pytestmark = pytest.mark.slow  # 48 simulated studies, a real bootstrap (~30 s); fast checks: test_analysis

STUDIES = 12


def verdicts(drift: float = 0.0, payoff: float = 0.0):
    out = []
    for r in range(STUDIES):
        rows, _ = simulate_study(drift=drift, payoff=payoff, rng_seed=500 + r)
        a = analyze(rows, n_bootstrap=100, bootstrap_seed=r)
        t = a.transfer.iloc[0]
        out.append((t.verdict, t.slope_low <= drift <= t.slope_high, a.payoff.iloc[0].verdict))
    return out


@pytest.mark.parametrize("drift, right, wrong", [(0.0, "transfers", "drifts"), (0.5, "drifts", "transfers")])
def test_transfer_verdicts_are_mostly_right_and_never_confidently_wrong(drift, right, wrong):
    found = verdicts(drift=drift)
    called = [v for v, _, _ in found]
    assert called.count(right) >= 0.75 * STUDIES, called
    assert called.count(wrong) <= 1, called
    assert sum(covered for _, covered, _ in found) >= 0.8 * STUDIES


@pytest.mark.parametrize("payoff, right, wrong", [(-0.03, "helps", "hurts"), (0.03, "hurts", "helps")])
def test_depth_payoff_points_the_right_way(payoff, right, wrong):
    called = [p for _, _, p in verdicts(payoff=payoff)]
    assert called.count(right) >= 0.5 * STUDIES and wrong not in called, called
