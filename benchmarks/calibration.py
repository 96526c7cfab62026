"""How often the verdicts are right, and how often the 95% intervals cover the truth, on simulated
studies drawn from families the analysis does not assume (completep_sweep/synthetic.py FAMILIES).

Each study: 4 depths (2, 4, 8, 16), measured by the family's design and seeds, analysed by the real
``analyze``. Three worlds per family:
- keep: the optimum does not move (drift 0), depth neither helps nor hurts: right answers "keep"
  and "flat";
- re-tune: the optimum moves 0.5 octave per doubling (up or down, alternately), 1.5 octaves from
  depth 2 to 16; keeping the base optimum costs 1.9-5.6% at depth 16 by family: right "re-tune";
- payoff: the best loss falls or rises 0.02 nats per doubling: right "helps" or "hurts".
Coverage, per family: each shape's optimum interval against the true optimum; each regret interval
against the true regret of keeping the *estimated* base optimum (the value a user would keep); the
drift and payoff intervals against the true slopes. ``kappa`` columns: the widening of the
bootstrap percentiles that would give 95% (lines.SETTINGS holds the one in use).

    .venv/bin/python benchmarks/calibration.py [--repeats 60] [--n-bootstrap 200] [--quick] [--json]

--quick: 2 studies per world and family with 40 bootstrap resamples (seconds): a smoke test of the
same code path whose rates mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from completep_sweep.analysis import analyze  # noqa: E402
from completep_sweep.analysis.lines import SETTINGS  # noqa: E402
from completep_sweep.synthetic import FAMILIES, basin  # noqa: E402
from completep_sweep.synthetic import simulate_study as simulate  # noqa: E402

DEPTHS = (2, 4, 8, 16)
WORLDS = ("keep", "re-tune", "payoff")
WRONG = {"keep": "re-tune", "re-tune": "keep", "helps": "hurts", "hurts": "helps", "flat": None}


def _needed(estimate: float, low: float, high: float, truth: float, kappa: float) -> float:
    """The widening of this interval's raw bootstrap side that would just reach the truth."""
    side = (estimate - low) if truth < estimate else (high - estimate)
    gap = abs(truth - estimate)
    if gap == 0:
        return 0.0
    return math.inf if side <= 0 or not math.isfinite(side) else kappa * gap / side


def study(family, world: str, r: int, n_boot: int) -> dict:
    sign = 1 if r % 2 == 0 else -1
    drift = 0.5 * sign if world == "re-tune" else 0.0
    payoff = 0.02 * sign if world == "payoff" else 0.0
    rows, mu0 = simulate(drift=drift, payoff=payoff, depths=DEPTHS, rng_seed=r, family=family)
    a = analyze(rows, n_bootstrap=n_boot, bootstrap_seed=r)
    t, p = a.transfer.iloc[0], a.payoff.iloc[0]
    out = {"transfer": t.verdict, "payoff": p.verdict, "cover": Counter(), "total": Counter(), "need": {}}

    def record(kind, estimate, low, high, truth, kappa):
        if not (math.isfinite(low) and math.isfinite(high)):
            return
        out["total"][kind] += 1
        out["cover"][kind] += low - 1e-9 <= truth <= high + 1e-9
        out["need"].setdefault(kind, []).append(_needed(estimate, low, high, truth, kappa))

    optimum = lambda d: mu0 + drift * math.log2(d / DEPTHS[0])  # noqa: E731
    for o in a.optima.itertuples():
        record(
            "optimum",
            math.log2(o.optimum_refined),
            math.log2(o.interval_low),
            math.log2(o.interval_high),
            optimum(o.depth),
            SETTINGS.kappa_optimum,
        )
    keep = math.log2(a.regret["base_optimum"].iloc[0])
    for g in a.regret.itertuples():
        if g.depth == DEPTHS[0] or not math.isfinite(g.regret_percent):
            continue
        best = 2.4 + payoff * math.log2(g.depth / DEPTHS[0])
        truth = 100 * float(basin(keep - optimum(g.depth), family.basin)) / best
        record("regret", g.regret_percent, g.regret_low, g.regret_high, truth, SETTINGS.kappa_regret)
    record("drift", t.slope, t.slope_low, t.slope_high, drift, SETTINGS.kappa_drift)
    record("payoff", p.slope, p.slope_low, p.slope_high, payoff, SETTINGS.kappa_payoff)
    out["right"] = {
        "transfer": "keep" if world in ("keep", "payoff") else "re-tune",
        "payoff": "flat" if world != "payoff" else ("helps" if payoff < 0 else "hurts"),
    }
    return out


def run(family, repeats: int, n_boot: int) -> dict:
    verdicts = {q: Counter() for q in ("transfer", "payoff")}
    right = {q: Counter() for q in ("transfer", "payoff")}
    cover, total, need = Counter(), Counter(), {}
    for world in WORLDS:
        for r in range(repeats):
            s = study(family, world, 1000 * WORLDS.index(world) + r, n_boot)
            for q in ("transfer", "payoff"):
                answer = s["right"][q]
                got = s[q]
                verdicts[q][(answer, got)] += 1
                right[q][answer] += 1
            cover.update(s["cover"])
            total.update(s["total"])
            for k, v in s["need"].items():
                need.setdefault(k, []).extend(v)
    out = {"family": family.name, "repeats": repeats, "coverage": {}, "kappa_for_95": {}}
    for q in ("transfer", "payoff"):
        n = sum(right[q].values())
        ok = sum(c for (a, g), c in verdicts[q].items() if a == g)
        wrong = sum(
            c
            for (a, g), c in verdicts[q].items()
            if WRONG.get(a) == g or (a == "flat" and g in ("helps", "hurts"))
        )
        out[q] = {
            "right": ok / n,
            "wrong": wrong / n,
            "undecided": 1 - (ok + wrong) / n,
            "counts": {f"{a}->{g}": c for (a, g), c in sorted(verdicts[q].items())},
        }
    for k in total:
        out["coverage"][k] = cover[k] / total[k]
        out["kappa_for_95"][k] = float(np.quantile(need[k], 0.95))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, help="studies per world and family (default 60; 2 with --quick)"
    )
    parser.add_argument(
        "--n-bootstrap", type=int, help="bootstrap draws per analysis (default 200; 40 quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: a few studies, a cheap bootstrap")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 60)
    n_boot = args.n_bootstrap or (40 if args.quick else SETTINGS.n_bootstrap)
    t0 = time.monotonic()
    results = [run(f, repeats, n_boot) for f in FAMILIES]
    if args.json:
        print(json.dumps({"settings": vars(SETTINGS), "families": results}, indent=1))
        return
    print(f"settings: {vars(SETTINGS)}")
    print(f"{repeats} studies per world (keep, re-tune, payoff) and family, {n_boot} bootstrap draws each\n")
    head = (
        "family",
        "keep/re-tune right",
        "wrong firm",
        "payoff right",
        "wrong firm",
        "cover: optimum",
        "regret",
        "drift",
        "payoff",
    )
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for res in results:
        c, t, p = res["coverage"], res["transfer"], res["payoff"]
        print(
            " | ".join(
                [
                    res["family"],
                    f"{100 * t['right']:.0f}%",
                    f"{100 * t['wrong']:.1f}%",
                    f"{100 * p['right']:.0f}%",
                    f"{100 * p['wrong']:.1f}%",
                    *(
                        f"{100 * c[k]:.0f}% (κ {res['kappa_for_95'][k]:.2f})" if k in c else "-"
                        for k in ("optimum", "regret", "drift", "payoff")
                    ),
                ]
            )
        )
    print(f"\n{time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
