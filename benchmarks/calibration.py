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

    .venv/bin/python benchmarks/calibration.py [--repeats 60] [--n-bootstrap 200] [--jobs 2] [--quick]
                                               [--json]

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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from completep_sweep.analysis import analyze  # noqa: E402
from completep_sweep.analysis.curve import Curve, loss_at  # noqa: E402
from completep_sweep.analysis.lines import SETTINGS  # noqa: E402
from completep_sweep.synthetic import FAMILIES, basin, shift_learning_rates  # noqa: E402
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
        out.setdefault("kappa_for_93", {})[k] = float(np.quantile(need[k], 0.93))
    return out


REAL = Path(__file__).resolve().parent / "data" / "dense-whole-octave.csv"
"""The 140 rows of benchmarks/dense-whole-octave.toml (µP and CompleteP, depths 2-32, 2 seeds)."""
SUBSETS = ((2, 4, 8, 16, 32), (2, 4, 8, 16), (2, 8, 32), (2, 4, 16, 32))


def _true_regret(rows, p: str, depths, shift: float) -> float:
    """The cost of keeping the base optimum at the deepest depth after ``shift`` octaves per doubling,
    read from the unshifted real curves themselves (the truth as measured: 2 seeds)."""
    curve = lambda d: Curve.from_trials(  # noqa: E731
        rows[(rows.parameterization == p) & (rows.depth == d)].assign(
            _value=lambda f: np.where(f.status.eq("ok"), f.final_val_loss, np.inf)
        ),
        "lr",
    )
    keep, deep = curve(depths[0]).optimum(), curve(depths[-1])
    finite = deep.means[np.isfinite(deep.means)]
    at = loss_at(deep.x, deep.means, keep - shift * math.log2(depths[-1] / depths[0]))
    return 100 * (at - finite.min()) / finite.min()


def semi_synthetic(n_boot: int, quick: bool = False) -> list[dict]:
    """Real rows with a known drift injected (``shift_learning_rates``), per parameterization: the
    verdicts against the truth read from the unshifted curves (re-tune where keeping costs more
    than 2ε there, keep where less than ε/2, either in between), and whether the drift interval
    holds the unshifted estimate plus the injected drift."""
    import pandas as pd

    real = pd.read_csv(REAL)
    shifts = (-0.5, 0.0, 0.5) if quick else tuple(np.round(np.arange(-1.0, 1.01, 0.1), 2))
    out = []
    for p in sorted(real.parameterization.unique()):
        verdicts, cover, total = Counter(), 0, 0
        for depths in SUBSETS[:1] if quick else SUBSETS:
            rows = real[(real.parameterization == p) & real.depth.isin(depths)].assign(base_depth=depths[0])
            d0 = analyze(rows, n_bootstrap=n_boot).transfer.iloc[0].slope
            for shift in shifts:
                t = analyze(shift_learning_rates(rows, shift), n_bootstrap=n_boot).transfer.iloc[0]
                truth = _true_regret(real, p, depths, shift)
                tol = SETTINGS.regret_tolerance
                right = "re-tune" if truth > 2 * tol else "keep" if truth < tol / 2 else "either"
                verdicts[(right, t.verdict)] += 1
                if math.isfinite(t.slope_low) and math.isfinite(t.slope_high):
                    total += 1
                    cover += t.slope_low - 1e-9 <= d0 + shift <= t.slope_high + 1e-9
        n = sum(verdicts.values())
        ok = sum(c for (a, g), c in verdicts.items() if a == g or (a == "either" and g != "inconclusive"))
        wrong = sum(c for (a, g), c in verdicts.items() if WRONG.get(a) == g)
        out.append(
            {
                "family": f"real rows ({p}, dense whole octaves, 2 seeds), lr shifted",
                "transfer": {"right": ok / n, "wrong": wrong / n, "undecided": 1 - (ok + wrong) / n},
                "coverage": {"drift": cover / total if total else math.nan},
                "kappa_for_95": {},
                "studies": n,
            }
        )
    return out


def report_time() -> dict:
    """Seconds for what ``report`` computes and writes, on a simulated study larger than the demo's
    328 rows (4 parameterizations x depths 2-16, the bracket design, 3 seeds): the analysis with its
    full bootstrap, the recommendations and every report file (plots, tables, verdict.json)."""
    import tempfile

    import pandas as pd

    from completep_sweep.answer import recommendations
    from completep_sweep.report import write_report

    names = ("sp", "mup", "alpha0.5", "completep")
    rows = pd.concat(
        [simulate(parameterization=p, rng_seed=7 + i, drift=0.3 * i)[0] for i, p in enumerate(names)]
    )
    t0 = time.monotonic()
    a = analyze(rows)
    t1 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        write_report(a, tmp, recommendations(a), a.to_json_dict())
    return {"rows": len(rows), "analysis_s": t1 - t0, "report_s": time.monotonic() - t0}


def _percent(x: float, digits: int) -> str:
    return f"{100 * x:.{digits}f}%" if math.isfinite(x) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, help="studies per world and family (default 60; 2 with --quick)"
    )
    parser.add_argument(
        "--n-bootstrap", type=int, help="bootstrap draws per analysis (default 200; 40 quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: a few studies, a cheap bootstrap")
    parser.add_argument("--jobs", type=int, default=1, help="processes, one family each (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 60)
    n_boot = args.n_bootstrap or (40 if args.quick else SETTINGS.n_bootstrap)
    t0 = time.monotonic()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, FAMILIES, [repeats] * len(FAMILIES), [n_boot] * len(FAMILIES)))
    results += semi_synthetic(n_boot, args.quick)
    timing = report_time()
    if args.json:
        print(json.dumps({"settings": vars(SETTINGS), "families": results, "report": timing}, indent=1))
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
        c, t = res["coverage"], res["transfer"]
        p = res.get("payoff", {"right": math.nan, "wrong": math.nan})
        print(
            " | ".join(
                [
                    res["family"],
                    f"{100 * t['right']:.0f}%",
                    f"{100 * t['wrong']:.1f}%",
                    _percent(p["right"], 0),
                    _percent(p["wrong"], 1),
                    *(
                        (
                            f"{100 * c[k]:.0f}%"
                            + (f" (κ {res['kappa_for_95'][k]:.2f})" if k in res["kappa_for_95"] else "")
                        )
                        if k in c
                        else "-"
                        for k in ("optimum", "regret", "drift", "payoff")
                    ),
                ]
            )
        )
    derived = {
        k: max(r["kappa_for_93"][k] for r in results if k in r.get("kappa_for_93", {}))
        for k in ("optimum", "regret", "drift", "payoff")
    }
    print(
        "\nderived (the least widening with which every family's intervals cover at least 93%): "
        + ", ".join(f"kappa_{k} = {v:.2f}" for k, v in derived.items())
    )
    print(
        f"\nreport on {timing['rows']} simulated rows: {timing['report_s']:.1f} s "
        f"(analysis {timing['analysis_s']:.1f} s; the rest: plots and tables)"
    )
    print(f"{time.monotonic() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
