"""Compute spent to a decided verdict, and how often it is right: dense grid, bracket, decided.

Three ways to spend trials on the depth questions (does keeping the base lr cost more than the
tolerance at depth: keep / re-tune; does depth pay: helps / hurts / flat), each read by the same
analysis `report` runs:
- dense: a whole-octave grid 2^-11 … 2^-1 with 3 seeds at every point and depth (the anchors' way);
- bracket: today's `[search] method = "bracket"` (grid 2^-9 … 2^-3 every 2 octaves with 1 seed,
  refined to half an octave, 3 seeds at the best point and its neighbours, stability probed);
- decided: `[search] method = "decided"` (the bracket with 1 seed at the base depth, three points
  around its optimum at every other depth, then more seeds only where a verdict is still open: 2, 3,
  4, 6, 9, 12 per point); the same with max_seeds = 3; and with a budget of a quarter of the dense
  grid's trials (the goal the issue set).
Synthetic studies: four depths (2-16) of one parameterization, in worlds where the truth is known
(keep: the optimum stays; re-tune: it moves ±0.5 octave per doubling; payoff: the best loss moves
±0.02 nats per doubling), drawn from the calibration's families (completep_sweep/synthetic.py).
A verdict counts as right when it is the truth, wrong when it is the opposite firm verdict.
Deepening (``[search] max_depth``): slowly drifting optima (0, 0.15 or 0.3 octave per doubling,
either way), where depth 16 may not yet show what keeping the base lr costs at depth 64, the depth
the user asks about. The decided search over depths 2-16, with and without max_depth = 64, is
scored against the truth at depth 64 (re-tune when keeping the base optimum costs more than the 1%
tolerance there); its compute is counted in layer-trials (a trial at depth d costs about d).
Real rows: benchmarks/data/dense-whole-octave.csv (µP and CompleteP, depths 2-32, 2 seeds): the
decided search is replayed on them (every point it asks for was measured), and its verdicts and
trials are set beside the dense grid's own.

    .venv/bin/python benchmarks/decision_cost.py [--repeats 6] [--quick] [--json]
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
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from completep_sweep.analysis import analyze  # noqa: E402
from completep_sweep.search.bracket import BracketRules, Group  # noqa: E402
from completep_sweep.search.decide import DecidedPlan  # noqa: E402
from completep_sweep.sweep import parse_sweep  # noqa: E402
from completep_sweep.synthetic import FAMILIES, SyntheticShape, trial_row  # noqa: E402

DEPTHS = (2, 4, 8, 16)
DENSE = tuple(float(x) for x in range(-11, 0))
WORLDS = ("keep", "re-tune", "payoff")
OPPOSITE = {"keep": "re-tune", "re-tune": "keep", "helps": "hurts", "hurts": "helps", "flat": None}
BRACKET = BracketRules(
    grid=(-9.0, -7.0, -5.0, -3.0), base_seeds=(0,), resolution=0.5, max_extend=2.0, seeds=3
)
SPEC = """name = "decided-benchmark"
model = "tiny"
parameterizations = ["completep"]
[grid]
width = [32]
depth = {depths}
lr = {{ log2_range = [-9, -3], step = 2 }}
seed = [0]
[train]
steps = 300
[search]
method = "decided"
resolution = 0.5
max_extend = 2
max_seeds = 12
"""
REAL = ROOT / "benchmarks" / "data" / "dense-whole-octave.csv"


def _row(depth: int, x: float, seed: int, loss: float) -> dict:
    shape = dict(parameterization="completep", width=32, depth=depth, base_width=16, base_depth=DEPTHS[0])
    return trial_row(**shape, x=x, seed=seed, loss=loss)


def _verdicts(rows: pd.DataFrame) -> dict[str, str]:
    a = analyze(rows)
    return {"transfer": str(a.transfer["verdict"].iloc[0]), "payoff": str(a.payoff["verdict"].iloc[0])}


def worlds_for(family, world: str, r: int):
    sign = 1 if r % 2 == 0 else -1
    drift = 0.5 * sign if world == "re-tune" else 0.0
    payoff = 0.02 * sign if world == "payoff" else 0.0
    optimum = float(np.random.default_rng(r).uniform(-6.0, -4.5))

    def make():  # a fresh copy of the same world for each method
        return {
            d: SyntheticShape(
                optimum=optimum + drift * math.log2(d / DEPTHS[0]),
                best_loss=2.4 + payoff * math.log2(d / DEPTHS[0]),
                rng=np.random.default_rng([r, d]),
                family=family,
            )
            for d in DEPTHS
        }

    truth = {
        "transfer": "re-tune" if world == "re-tune" else "keep",
        "payoff": "flat" if world != "payoff" else ("helps" if payoff < 0 else "hurts"),
    }
    return make, truth


def dense(shapes) -> tuple[int, dict]:
    rows = [_row(d, x, s, shapes[d].loss(x, s)) for d in DEPTHS for x in DENSE for s in (0, 1, 2)]
    return len(rows), _verdicts(pd.DataFrame(rows))


def bracket(shapes) -> tuple[int, dict]:
    rows = []
    for d in DEPTHS:
        group = Group(BRACKET)
        while points := group.next_round():
            for x, s in points:
                group.measured[(x, s)] = shapes[d].loss(x, s)
        rows += [_row(d, x, s, v) for (x, s), v in group.measured.items()]
    return len(rows), _verdicts(pd.DataFrame(rows))


def decided(shapes, budget=None, max_seeds: int = 12, extra: str = "", layers: list | None = None):
    spec = SPEC.format(depths=list(DEPTHS)) + (f"budget = {budget}\n" if budget else "") + extra
    spec = spec.replace("max_seeds = 12", f"max_seeds = {max_seeds}")
    plan = DecidedPlan(parse_sweep(spec), {})
    n = 0
    while (config := plan.take()) is not None:
        loss = shapes[config.depth].loss(math.log2(config.lr), config.seed)
        plan.record(config, "ok" if math.isfinite(loss) else "diverged", loss)
        n += 1
        if layers is not None:
            layers.append(config.depth)
    (said,) = plan.verdicts.values()
    return n, said


METHODS = {
    "dense": dense,
    "bracket": bracket,
    "decided": decided,
    "decided, max_seeds 3": lambda shapes: decided(shapes, max_seeds=3),
    # the issue's goal, as a budget: a quarter of the dense grid's trials per parameterization
    "decided, budget 25%": lambda shapes: decided(shapes, budget=len(DEPTHS) * len(DENSE) * 3 // 4),
}


def synthetic(families, repeats: int) -> list[dict]:
    out = []
    for family in families:
        tally = {m: {"trials": [], "right": Counter(), "wrong": Counter()} for m in METHODS}
        n = 0
        for world in WORLDS:
            for r in range(repeats):
                make, truth = worlds_for(family, world, 1000 * WORLDS.index(world) + r)
                n += 1
                for name, method in METHODS.items():
                    trials, said = method(make())
                    tally[name]["trials"].append(trials)
                    for q in ("transfer", "payoff"):
                        tally[name]["right"][q] += said[q] == truth[q]
                        tally[name]["wrong"][q] += said[q] == OPPOSITE[truth[q]] or (
                            truth[q] == "flat" and said[q] in ("helps", "hurts")
                        )
        dense_trials = np.mean(tally["dense"]["trials"])
        for name, t in tally.items():
            out.append(
                {
                    "family": family.name,
                    "method": name,
                    "studies": n,
                    "trials": float(np.mean(t["trials"])),
                    "tokens_vs_dense": float(np.mean(t["trials"]) / dense_trials),
                    **{f"{q}_right": t["right"][q] / n for q in ("transfer", "payoff")},
                    **{f"{q}_wrong": t["wrong"][q] / n for q in ("transfer", "payoff")},
                }
            )
    return out


class Drifting(dict):
    """depth -> SyntheticShape, made on first use (a search with max_depth asks for depths past 16)."""

    def __init__(self, family, optimum: float, drift: float, r: int):
        super().__init__()
        self.family, self.optimum, self.drift, self.r = family, optimum, drift, r

    def optimum_at(self, depth: int) -> float:
        return self.optimum + self.drift * math.log2(depth / DEPTHS[0])

    def __missing__(self, depth: int) -> SyntheticShape:
        rng = np.random.default_rng([self.r, depth])
        self[depth] = SyntheticShape(optimum=self.optimum_at(depth), rng=rng, family=self.family)
        return self[depth]


DEEPEN = {"decided, max_seeds 6": "", "decided, max_seeds 6, max_depth 64": "max_depth = 64\n"}


def deepening(family, repeats: int) -> list[dict]:
    """Slow drifts, scored at depth 64 (see the module docstring)."""
    out = []
    for drift in (0.0, 0.15, 0.3):
        tally = {m: {"trials": [], "layers": [], "right": 0, "wrong": 0, "deeper": 0} for m in DEEPEN}
        truths = Counter()
        for r in range(repeats):
            sign = 1 if r % 2 == 0 else -1
            optimum = float(np.random.default_rng(7000 + r).uniform(-6.0, -4.5))
            probe = Drifting(family, optimum, sign * drift, 7000 + r)
            deep = probe[64]
            regret = 100 * (deep.expected(optimum) / deep.expected(deep.optimum) - 1)
            truth = "re-tune" if regret > 1.0 else "keep"
            truths[truth] += 1
            for name, extra in DEEPEN.items():
                layers: list[int] = []
                trials, said = decided(
                    Drifting(family, optimum, sign * drift, 7000 + r), max_seeds=6, extra=extra, layers=layers
                )
                t = tally[name]
                t["trials"].append(trials)
                t["layers"].append(sum(layers))
                t["right"] += said["transfer"] == truth
                t["wrong"] += said["transfer"] == OPPOSITE[truth]
                t["deeper"] += max(layers) > DEPTHS[-1]
        base = np.mean(tally[next(iter(DEEPEN))]["layers"])
        for name, t in tally.items():
            out.append(
                {
                    "drift": drift,
                    "truth at 64": dict(truths),
                    "method": name,
                    "studies": repeats,
                    "trials": float(np.mean(t["trials"])),
                    "layers_vs_plain": float(np.mean(t["layers"]) / base),
                    "added_depth": t["deeper"] / repeats,
                    "transfer_right": t["right"] / repeats,
                    "transfer_wrong": t["wrong"] / repeats,
                }
            )
    return out


def real() -> list[dict]:
    """The decided search replayed on the dense-grid rows (2 seeds, whole octaves) against the dense
    grid's own verdicts on all of them."""
    rows = pd.read_csv(REAL)
    out = []
    for p, mine in rows.groupby("parameterization", sort=False):
        every = sorted(int(d) for d in mine["depth"].unique())
        for depths, extra in ((every, ""), (every[:3], f"max_depth = {every[-1]}\n")):
            out.append(_replay(p, mine, depths, extra))
    return out


def _replay(p: str, mine: pd.DataFrame, depths: list[int], extra: str) -> dict:
    """The decided search over ``depths`` (``extra``: more [search] keys), answered from the rows."""
    lookup = {(int(r.depth), math.log2(r.lr), int(r.seed)): r for r in mine.itertuples()}
    spec = SPEC.format(depths=depths).replace('"completep"', f'"{p}"')
    spec = spec.replace("[-9, -3], step = 2", "[-10, -4], step = 2").replace(
        "resolution = 0.5", "resolution = 1"
    )
    spec = spec.replace("max_extend = 2", "max_extend = 0").replace("max_seeds = 12", "max_seeds = 2")
    spec = spec.replace("seed = [0]", "seed = [0, 1]")
    spec = spec.replace("width = [32]", f"width = [{int(mine['width'].iloc[0])}]")
    spec += extra
    spec += f"[model_overrides]\nbase_width = {int(mine['base_width'].iloc[0])}\nbase_depth = {depths[0]}\n"
    plan = DecidedPlan(parse_sweep(spec), {})
    used = []
    while (config := plan.take()) is not None:
        r = lookup.get((config.depth, math.log2(config.lr), config.seed))
        if r is None or r.status == "error":
            plan.record(config, "error", None)
            continue
        used.append(r.Index)
        plan.record(config, r.status, r.final_val_loss if r.status == "ok" else math.inf)
    return {
        "parameterization": p,
        "depths": depths,
        "max_depth": plan.max_depth,
        "added": sorted({d for added in plan.added.values() for d in added}),
        "dense_trials": len(mine),
        "decided_trials": len(used),
        "dense": _verdicts(mine),
        "decided": next(iter(plan.verdicts.values())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, help="studies per world and family (default 6; 1 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: one family, one study per world")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    families = FAMILIES[:1] if args.quick else (FAMILIES[0], FAMILIES[1], FAMILIES[3], FAMILIES[4])
    repeats = args.repeats or (1 if args.quick else 6)
    report = {
        "synthetic": synthetic(families, repeats),
        "deepening": deepening(families[0], 2 if args.quick else 4 * repeats),
        "real": real(),
    }
    report["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(
        "| family | method | trials | trial-tokens vs dense | transfer right | wrong | payoff right | wrong |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in report["synthetic"]:
        print(
            f"| {s['family']} | {s['method']} | {s['trials']:.0f} | {100 * s['tokens_vs_dense']:.0f}% | "
            f"{100 * s['transfer_right']:.0f}% | {100 * s['transfer_wrong']:.0f}% | "
            f"{100 * s['payoff_right']:.0f}% | {100 * s['payoff_wrong']:.0f}% |"
        )
    print(
        "\n| drift (octaves per doubling) | truth at depth 64 | method | trials | layer-trials vs plain | "
        "added a depth | transfer right | wrong |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in report["deepening"]:
        truth = ", ".join(f"{k} {v}" for k, v in sorted(s["truth at 64"].items()))
        pct = {
            k: f"{100 * s[k]:.0f}%"
            for k in ("layers_vs_plain", "added_depth", "transfer_right", "transfer_wrong")
        }
        print(
            f"| {s['drift']} | {truth} | {s['method']} | {s['trials']:.0f} | {pct['layers_vs_plain']} | "
            f"{pct['added_depth']} | {pct['transfer_right']} | {pct['transfer_wrong']} |"
        )
    for r in report["real"]:
        added = f", max_depth {r['max_depth']}: added {r['added'] or 'none'}" if r["max_depth"] else ""
        print(
            f"real rows, {r['parameterization']}, depths {r['depths']}{added}: "
            f"decided {r['decided_trials']} of "
            f"{r['dense_trials']} trials; "
            f"transfer {r['decided']['transfer']} (dense: {r['dense']['transfer']}), payoff "
            f"{r['decided']['payoff']} (dense: {r['dense']['payoff']})"
        )
    print(f"benchmark time: {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
