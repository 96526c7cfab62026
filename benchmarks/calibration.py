"""How often the verdicts are right: simulated transfer studies with known answers.

Each study: 4 depths (2, 4, 8, 16), 3 seeds on every point, each depth searched by the demo's
bracket rules (grid 2^-9, 2^-7, 2^-5, 2^-3, refined to half an octave, stability probed), noise
shaped like real trials on this machine (completep_sweep/synthetic.py), analysed by the real
``analyze``. Scenarios:
- transfer: a fixed optimum (drift 0) and a true drift of 1.5 octaves over depth 2-16 (0.5 per
  doubling). Targets: each called right >= 80%, a wrong firm verdict <= 5%, 95% intervals of the
  drift cover the truth 90-99% of the time.
- payoff: the best loss falls 0.02 nats per doubling (helps), stays (flat) or rises (hurts).
- stability follows the drift (the edge of stability sits at a fixed distance above the optimum).

    .venv/bin/python benchmarks/calibration.py [--repeats 200] [--n-bootstrap 200] [--quick] [--json]

--quick: 3 studies per scenario with 40 bootstrap resamples (seconds): a smoke test of the same
code path whose rates mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from completep_sweep.analysis import analyze  # noqa: E402
from completep_sweep.synthetic import simulate_study  # noqa: E402

DEPTHS = (2, 4, 8, 16)
SCENARIOS = {  # name: (drift octaves per doubling, payoff nats per doubling, right answers)
    "fixed optimum": (0.0, 0.0, {"transfer": "transfers", "stability": "stays"}),
    "drift 1.5 octaves": (0.5, 0.0, {"transfer": "drifts", "stability": "rises"}),
    "depth helps": (0.0, -0.02, {"payoff": "helps"}),
    "depth is flat": (0.0, 0.0, {"payoff": "flat"}),
    "depth hurts": (0.0, 0.02, {"payoff": "hurts"}),
}
WRONG = {
    "transfer": {"transfers": ("drifts",), "drifts": ("transfers",)},  # firm verdicts that are wrong
    "payoff": {"helps": ("hurts",), "hurts": ("helps",), "flat": ("helps", "hurts")},
    "stability": {"stays": ("falls", "rises"), "rises": ("falls", "stays")},
}


def run(name: str, repeats: int, n_boot: int = 200, offset: int = 0) -> dict:
    drift, payoff, right = SCENARIOS[name]
    verdicts = {q: Counter() for q in right}
    covered, optimum_covered, optimum_total = 0, 0, 0
    z = {"drift": [], "payoff": [], "stability": []}  # (estimate - truth) / (half-width / 1.96)
    for r in range(offset, offset + repeats):
        rows, mu0 = simulate_study(drift=drift, payoff=payoff, depths=DEPTHS, rng_seed=r)
        a = analyze(rows, n_bootstrap=n_boot, bootstrap_seed=r)
        t = a.transfer.iloc[0]
        covered += t.slope_low <= drift <= t.slope_high
        for kind, row, truth in (
            ("drift", t, drift),
            ("payoff", a.payoff.iloc[0], payoff),
            ("stability", a.stability.iloc[0], drift),
        ):
            half = (row.slope_high - row.slope_low) / 2
            if half > 0 and math.isfinite(half):
                z[kind].append((row.slope - truth) / (half / 1.959964))
        for o in a.optima.itertuples():
            truth = 2.0 ** (mu0 + drift * math.log2(o.depth / DEPTHS[0]))
            optimum_total += 1
            optimum_covered += o.interval_low <= truth <= o.interval_high
        got = {
            "transfer": t.verdict,
            "payoff": a.payoff.iloc[0].verdict,
            "stability": a.stability.iloc[0].verdict,
        }
        for q in right:
            verdicts[q][got[q]] += 1
    out = {
        "scenario": name,
        "repeats": repeats,
        "drift_coverage": covered / repeats,
        "optimum_coverage": optimum_covered / optimum_total,
        "coverage": {k: float(np.mean(np.abs(v) <= 1.959964)) for k, v in z.items() if v},
        "widening_needed": {k: float(np.quantile(np.abs(v), 0.95) / 1.959964) for k, v in z.items() if v},
    }
    for q, answer in right.items():
        out[q] = {
            "right": verdicts[q][answer] / repeats,
            "wrong": sum(verdicts[q][w] for w in WRONG[q][answer]) / repeats,
            "counts": dict(verdicts[q]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="studies per scenario (default 200; 3 with --quick)")
    parser.add_argument(
        "--n-bootstrap", type=int, help="bootstrap resamples per analysis (default 200; 40 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: a few studies, a cheap bootstrap")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 200)
    n_boot = args.n_bootstrap or (40 if args.quick else 200)
    results = [run(name, repeats, n_boot=n_boot) for name in SCENARIOS]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for res in results:
        questions = [q for q in ("transfer", "payoff", "stability") if q in res]
        parts = [
            f"{q}: right {100 * res[q]['right']:.0f}%, wrong {100 * res[q]['wrong']:.0f}% {res[q]['counts']}"
            for q in questions
        ]
        print(
            f"{res['scenario']:<18} ({res['repeats']} studies) drift interval covers "
            f"{100 * res['drift_coverage']:.0f}%, optimum intervals {100 * res['optimum_coverage']:.0f}%; "
            + "; ".join(parts)
        )
        cover = ", ".join(
            f"{k} {100 * v:.0f}% (x{res['widening_needed'][k]:.2f} for 95%)"
            for k, v in res["coverage"].items()
        )
        print(f"{'':<18} 95% intervals cover: {cover}")


if __name__ == "__main__":
    main()
