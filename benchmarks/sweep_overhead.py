"""Orchestration overhead of a sweep, and trial-expansion time of a 10,000-trial sweep file.

1. Overhead: a sweep's wall time against the ideal, (sum of its trials' own wall times) /
   concurrency, measured on the same run. The ratio is what Ray startup, Tune scheduling, actor
   reuse, Parquet writes and idle cores at the tail cost. Goal <= 1.10x.
   - default: runs the demo sweep (sweeps/depth-transfer-demo.toml) into a temporary results dir
     (about 15 minutes on 2 cores);
   - --quick: an 8-trial, 100-step sweep (about half a minute, mostly Ray's start), the smoke mode;
   - --existing results/<sweep>: reads the latest run record of an earlier `completep-sweep run`
     (e.g. after `make sweep`) instead of training again.
2. Expansion: parse, validate and expand a sweep file of exactly 10,000 trials (best of 3). Goal < 2 s.

    .venv/bin/python benchmarks/sweep_overhead.py [--quick | --existing DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _line in (ROOT / "loopback.env").read_text().splitlines():  # loopback-only Ray (README "Machine notes")
    if _line.strip() and not _line.startswith("#"):
        os.environ.setdefault(*_line.split("=", 1))

from completep_sweep.store import ResultStore  # noqa: E402
from completep_sweep.sweep import load_sweep, parse_sweep  # noqa: E402

QUICK = """
name = "overhead-quick"
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
width = [64]
depth = [2]
lr = { log2_range = [-9, -6] }
[train]
steps = 100
batch_size = 16
eval_interval = 50
"""
# 4 parameterizations x 10 depths x 25 LRs x 5 init stds x 2 seeds = 10,000 trials
TEN_THOUSAND = """
name = "ten-thousand"
model = "tiny"
parameterizations = ["sp", "mup", "alpha0.5", "completep"]
[grid]
width = [64]
depth = [2, 3, 4, 5, 6, 8, 10, 12, 14, 16]
lr = { log2_range = [-14, -2], step = 0.5 }
init_std = [0.005, 0.01, 0.02, 0.04, 0.08]
seed = [0, 1]
"""


def overhead_from(store: ResultStore, run: dict) -> dict:
    """Ideal time of the trials started during ``run``, against its wall time.

    Ideal time: the trials' seconds / concurrency.
    """
    rows = store.load(include_errors=False)
    started = datetime.fromisoformat(run["started_at"])
    finished = datetime.fromisoformat(run["finished_at"])
    mine = rows[[started <= datetime.fromisoformat(t) <= finished for t in rows.started_at]]
    ideal = mine.wall_time_s.sum() / run["concurrency"]
    return {
        "sweep": store.root.name,
        "trials": int(len(mine)),
        "concurrency": run["concurrency"],
        "wall_time_s": round(run["wall_time_s"], 1),
        "sum_trial_time_s": round(float(mine.wall_time_s.sum()), 1),
        "ideal_s": round(float(ideal), 1),
        "ratio": round(run["wall_time_s"] / ideal, 3),
    }


def run_and_measure(spec_text: str, spec_name: str) -> dict:
    from completep_sweep.runner.sweep import run_sweep

    sweep = parse_sweep(spec_text, source=spec_name)
    with tempfile.TemporaryDirectory(prefix="completep-bench-") as tmp:
        store = ResultStore(Path(tmp) / sweep.name)
        run_sweep(sweep, store, stream=open(os.devnull, "w"))
        return overhead_from(store, store.runs()[-1])


def expansion_time() -> dict:
    best, n = float("inf"), 0
    for _ in range(3):
        t0 = time.perf_counter()
        n = len(parse_sweep(TEN_THOUSAND, source="ten-thousand").trials)
        best = min(best, time.perf_counter() - t0)
    return {"trials": n, "seconds": round(best, 3), "us_per_trial": round(best / n * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke mode: an 8-trial sweep of 100 steps")
    mode.add_argument("--existing", help="measure the latest run recorded in this results dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.existing:
        store = ResultStore(args.existing)
        if not store.runs():
            sys.exit(f"{args.existing} has no run records (results/<sweep>/runs/); run the sweep first")
        overhead = overhead_from(store, store.runs()[-1])
    elif args.quick:
        overhead = run_and_measure(QUICK, "quick")
    else:
        demo = ROOT / "sweeps" / "depth-transfer-demo.toml"
        overhead = run_and_measure(load_sweep(demo).text, str(demo))
    result = {"overhead": overhead, "expansion": expansion_time(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result))
        return
    o, e = result["overhead"], result["expansion"]
    print(
        f"sweep {o['sweep']}: {o['trials']} trials at concurrency {o['concurrency']}: "
        f"wall {o['wall_time_s']} s, "
        f"ideal (sum of trial times / concurrency) {o['ideal_s']} s -> {o['ratio']:.3f}x (goal <= 1.10x)"
    )
    print(
        f"expansion of a {e['trials']:,}-trial sweep file: {e['seconds']:.3f} s "
        f"({e['us_per_trial']} us per trial; goal < 2 s)"
    )


if __name__ == "__main__":
    main()
