"""What a quarter of the dense grid can buy on the depth payoff, even knowing every optimum.

The decided search's goal (issue 22) was the dense grid's rate of right verdicts at a quarter of its
trial-tokens. It is met for transfer, not for the depth payoff (decision_cost.py). This asks whether
any allocation could meet it under today's analysis: an oracle that knows each depth's optimum puts
its trials on the half-octave point nearest it and that point's two neighbours (where a decided
search ends up, and where the payoff's best losses are read), at every depth (2-16), in the same
worlds and families as decision_cost.py. Each design is read twice: by a look of the decided
search (intervals widened, Settings.for_stopping) and by `report` (one look).

It then asks whether a bootstrap that modelled the correlation of one seed's noise along the lr
axis could narrow the payoff's interval: per design (grid step, correlation length, 3 seeds, the
measured basin and spread), how much the minimum of the seed means varies against the mean at the
best value alone, which is the width `report` uses (lines.py, ``Line.payoff``).

A first version also read that design with 12 seeds, where it found `report`'s payoff interval
too narrow; the calibration now has the design as a family ("close values, 12 seeds",
benchmarks/calibration.py), whose 120 studies measure it better than this benchmark's 24.

    .venv/bin/python benchmarks/payoff_floor.py [--repeats 8] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decision_cost import DENSE, DEPTHS, OPPOSITE, WORLDS, _row, worlds_for  # noqa: E402

from completep_sweep.analysis import analyze  # noqa: E402
from completep_sweep.analysis.lines import SETTINGS  # noqa: E402
from completep_sweep.synthetic import FAMILIES, close_values  # noqa: E402

DESIGNS = {  # name: (seeds per point, points at each depth: "near" the optimum or the dense grid)
    "dense grid, 11 lrs x 3 seeds": (3, "dense"),
    "oracle, 3 points x 3 seeds (27%)": (3, "near"),
}
READS = {"look": SETTINGS.for_stopping(), "report": SETTINGS}


def rows_of(shapes, seeds: int, points: str) -> pd.DataFrame:
    rows = []
    for d in DEPTHS:
        xs = close_values(shapes[d].optimum) if points == "near" else DENSE
        rows += [_row(d, x, s, shapes[d].loss(x, s)) for x in xs for s in range(seeds)]
    return pd.DataFrame(rows)


def run(families, repeats: int) -> list[dict]:
    out = []
    for family in families:
        for name, (seeds, points) in DESIGNS.items():
            right, wrong, n = Counter(), Counter(), 0
            for world in WORLDS:
                for r in range(repeats):
                    make, truth = worlds_for(family, world, 1000 * WORLDS.index(world) + r)
                    rows, n = rows_of(make(), seeds, points), n + 1
                    for read, settings in READS.items():
                        said = str(analyze(rows, settings=settings).payoff["verdict"].iloc[0])
                        right[read] += said == truth["payoff"]
                        flat = truth["payoff"] == "flat"
                        wrong[read] += said == OPPOSITE[truth["payoff"]] or (
                            flat and said in ("helps", "hurts")
                        )
            out.append(
                {
                    "family": family.name,
                    "design": name,
                    "studies": n,
                    **{f"{read}_right": right[read] / n for read in READS},
                    **{f"{read}_wrong": wrong[read] / n for read in READS},
                }
            )
    return out


def min_against_alone(step: float, length: float, seeds: int, draws: int, rng_seed: int = 0) -> float:
    """sd(the minimum over a grid of seed means) / sd(the mean at the grid's best value), averaged
    over where the optimum falls between grid values; noise correlated along the axis as
    exp(-distance / ``length``), the measured basin and spread (synthetic.py)."""
    import numpy as np

    from completep_sweep.synthetic import basin, spread

    rng = np.random.default_rng(rng_seed)
    xs = np.arange(-3.0, 3.0 + step / 2, step)
    chol = np.linalg.cholesky(np.exp(-np.abs(xs[:, None] - xs[None, :]) / length) + 1e-9 * np.eye(len(xs)))
    minima, alone = [], []
    for offset in np.linspace(-step / 2, step / 2, 5):
        d = xs - offset
        means = (basin(d) + spread(d) * (rng.standard_normal((draws, seeds, len(xs))) @ chol.T)).mean(axis=1)
        minima.append(means.min(axis=1).std())
        alone.append(means[:, int(np.argmin(basin(d)))].std())
    return float(np.mean(minima) / np.mean(alone))


CORRELATIONS = {"independent": 0.01, "as measured (1.4 octaves)": 1.4, "fully shared": 100.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8, help="studies per world and family (default 8)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: one family, one study per world")
    args = parser.parse_args()
    t0 = time.perf_counter()
    families = FAMILIES[:1] if args.quick else (FAMILIES[0], FAMILIES[1], FAMILIES[3], FAMILIES[4])
    table = run(families, 1 if args.quick else args.repeats)
    print("| family | design | payoff right, a look | wrong | right, report | wrong |")
    print("|---|---|---|---|---|---|")
    for s in table:
        pct = {k: f"{100 * s[k]:.0f}%" for k in s if k.endswith(("_right", "_wrong"))}
        print(
            f"| {s['family']} | {s['design']} | {pct['look_right']} | {pct['look_wrong']} | "
            f"{pct['report_right']} | {pct['report_wrong']} |"
        )
    draws = 500 if args.quick else 20_000
    print(f"\nsd of the minimum over the grid / sd at the best value alone (3 seeds, {draws} draws):\n")
    print("| grid | " + " | ".join(CORRELATIONS) + " |")
    print("|---|" + "---|" * len(CORRELATIONS))
    for step, name in ((0.5, "half octaves"), (1.0, "whole octaves")):
        ratios = [min_against_alone(step, length, 3, draws) for length in CORRELATIONS.values()]
        print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    print(f"benchmark time: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
