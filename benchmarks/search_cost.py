"""What a bracket search costs against a dense half-octave grid, for the same answer.

Both read the same measurements, so the comparison is of what each method chooses to run:
- synthetic: shapes with a known optimum and noise shaped like real trials here
  (completep_sweep/synthetic.py), many repeats;
- real: the trials of a dense half-octave grid with 3 seeds, run on this CPU
  (benchmarks/dense-half-octave.toml); the bracket search is replayed on those rows, so every
  point it asks for was measured (its start grid and extension limit keep it inside the dense grid).
Same answer: the bracket's optimum within 0.5 octave of the dense grid's, or its loss within 0.5%.
Cost: trials (every trial has the same token budget here, so trials = trial-tokens).

    .venv/bin/python benchmarks/search_cost.py [--repeats 1000] \
        [--real results/dense-half-octave] [--quick] [--json]

--quick: 40 synthetic shapes (seconds), a smoke test of the same code path; --real still replays all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from completep_sweep.search.bracket import BracketRules, Group  # noqa: E402
from completep_sweep.synthetic import SyntheticShape  # noqa: E402

DENSE = tuple(np.arange(-10, -2.75, 0.5))  # 2^-10 … 2^-3, the grid of dense-half-octave.toml
SEEDS = (0, 1, 2)
RULES = BracketRules(grid=(-9.0, -7.0, -5.0, -3.0), base_seeds=(0,), resolution=0.5, max_extend=1.0, seeds=3)


def dense_choice(loss) -> float:
    means = {x: np.mean([loss(x, s) for s in SEEDS]) for x in DENSE}
    finite = {x: m for x, m in means.items() if math.isfinite(m)}
    return min(finite, key=finite.get)


def bracket(loss, rules: BracketRules = RULES) -> Group:
    group = Group(rules)
    while points := group.next_round():
        for x, s in points:
            group.measured[(x, s)] = loss(x, s)
    return group


def same_answer(x_bracket: float, x_dense: float, value) -> bool:
    return abs(x_bracket - x_dense) <= 0.5 + 1e-9 or value(x_bracket) <= 1.005 * value(x_dense)


def synthetic(repeats: int) -> dict:
    rng = np.random.default_rng(0)
    agree, ratio, err_b, err_d = [], [], [], []
    for i in range(repeats):
        optimum = rng.uniform(-7.5, -4.0)
        shape = SyntheticShape(optimum=optimum, rng=np.random.default_rng(1000 + i))
        x_d = dense_choice(shape.loss)
        group = bracket(shape.loss)
        x_b = group.best()
        agree.append(same_answer(x_b, x_d, shape.expected))
        ratio.append(len(group.measured) / (len(DENSE) * len(SEEDS)))
        err_b.append(abs(x_b - optimum))
        err_d.append(abs(x_d - optimum))
    return {
        "repeats": repeats,
        "same_answer": float(np.mean(agree)),
        "cost_ratio": float(np.mean(ratio)),
        "bracket_within_half_octave_of_truth": float(np.mean(np.array(err_b) <= 0.5)),
        "dense_within_half_octave_of_truth": float(np.mean(np.array(err_d) <= 0.5)),
    }


def real(results: Path) -> dict:
    from completep_sweep.search import row_outcome
    from completep_sweep.store import ResultStore

    rows = ResultStore(results).load()
    shapes = {}
    for r in rows.to_dict("records"):
        shapes.setdefault((r["parameterization"], r["depth"]), {})[(math.log2(r["lr"]), r["seed"])] = (
            row_outcome(r)
        )
    out = []
    for (p, depth), measured in sorted(shapes.items()):

        def loss(x, s, m=measured):
            return m[(x, s)]

        means = {x: np.mean([loss(x, s) for s in SEEDS]) for x in DENSE}
        x_d = dense_choice(loss)
        group = bracket(loss)
        x_b = group.best()
        out.append(
            {
                "parameterization": p,
                "depth": depth,
                "dense_optimum": x_d,
                "bracket_optimum": x_b,
                "same_answer": bool(same_answer(x_b, x_d, lambda x, means=means: means[x])),
                "trials": len(group.measured),
                "dense_trials": len(DENSE) * len(SEEDS),
            }
        )
    total = sum(o["trials"] for o in out) / sum(o["dense_trials"] for o in out)
    return {
        "shapes": out,
        "same_answer": float(np.mean([o["same_answer"] for o in out])),
        "cost_ratio": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="synthetic shapes (default 1000; 40 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: a few synthetic shapes")
    parser.add_argument("--real", type=Path, help="results folder of benchmarks/dense-half-octave.toml")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {"synthetic": synthetic(args.repeats or (40 if args.quick else 1000))}
    if args.real:
        report["real"] = real(args.real)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    s = report["synthetic"]
    print(
        f"synthetic, {s['repeats']} shapes: same answer {100 * s['same_answer']:.1f}%, "
        f"cost {100 * s['cost_ratio']:.1f}% of the dense grid's trials; within 0.5 octave of the true "
        f"optimum: bracket {100 * s['bracket_within_half_octave_of_truth']:.1f}%, "
        f"dense {100 * s['dense_within_half_octave_of_truth']:.1f}%"
    )
    if "real" in report:
        r = report["real"]
        print(
            f"real trials ({args.real}), {len(r['shapes'])} shapes: same answer "
            f"{100 * r['same_answer']:.0f}%, cost {100 * r['cost_ratio']:.1f}% of the dense grid's trials"
        )
        for o in r["shapes"]:
            print(
                f"  {o['parameterization']:<10} depth {o['depth']:>2}: "
                f"dense 2^{o['dense_optimum']:g}, bracket "
                f"2^{o['bracket_optimum']:g} ({o['trials']} of {o['dense_trials']} trials)"
                + ("" if o["same_answer"] else "  DIFFERENT")
            )


if __name__ == "__main__":
    main()
