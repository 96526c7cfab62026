"""How many Optuna (TPE) trials reach the dense grid's best loss at the base shape.

Target: within 1% of the best loss the dense half-octave grid measured with the same seed.
- synthetic: one shape with noise shaped like real trials (completep_sweep/synthetic.py), TPE over
  lr in 2^-10 … 2^-3 (log-uniform), many sampler seeds, in process;
- real (--real DIR, the results of benchmarks/dense-half-octave.toml): `completep-sweep run` of an
  Optuna sweep at that grid's depth-2 shape (CompleteP, seed 0) for a few sampler seeds, on this CPU.

    .venv/bin/python benchmarks/optuna_vs_grid.py [--repeats 200] \
        [--real results/dense-half-octave] [--quick] [--json]

--quick: 5 synthetic studies and, with --real, one sampler seed of 4 trials of 30 steps: a smoke
test of the same code paths (seconds; a minute with --real) whose numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _line in (ROOT / "loopback.env").read_text().splitlines():  # loopback-only Ray (README "Machine notes")
    if _line.strip() and not _line.startswith("#"):
        os.environ.setdefault(*_line.split("=", 1))

from completep_sweep.synthetic import SyntheticShape  # noqa: E402

DENSE = np.arange(-10, -2.75, 0.5)
N_TRIALS = 24
TOLERANCE = 0.01


def trials_to_target(losses: list[float], target: float) -> int | None:
    """1-based index of the first trial within TOLERANCE of the target (None: never)."""
    for i, loss in enumerate(losses, 1):
        if loss <= target * (1 + TOLERANCE):
            return i
    return None


def synthetic(repeats: int) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    needed, grid_trials = [], len(DENSE)
    for i in range(repeats):
        shape = SyntheticShape(
            optimum=float(np.random.default_rng(i).uniform(-7.5, -4.0)), rng=np.random.default_rng(5000 + i)
        )
        target = min(shape.loss(x, 0) for x in DENSE)  # the grid's best, seed 0
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=i))
        losses = []
        for _ in range(N_TRIALS):
            trial = study.ask({"lr": optuna.distributions.FloatDistribution(2**-10, 2**-3, log=True)})
            x = math.log2(trial.params["lr"])
            loss = shape.loss(x, 0)
            study.tell(
                trial,
                loss if math.isfinite(loss) else None,
                state=None if math.isfinite(loss) else optuna.trial.TrialState.PRUNED,
            )
            losses.append(loss)
        needed.append(trials_to_target(losses, target))
    reached = [n for n in needed if n is not None]
    return {
        "repeats": repeats,
        "reached": len(reached) / repeats,
        "median_trials": float(np.median(reached)),
        "q90_trials": float(np.quantile(reached, 0.9)),
        "grid_trials": grid_trials,
        "n_trials": N_TRIALS,
    }


SWEEP = """name = "optuna-{seed}"
model = "tiny"
parameterizations = ["completep"]
[grid]
width = [32]
depth = [2]
lr = {{ log2_range = [-10, -3] }}
[train]
steps = {steps}
batch_size = 16
{extra_train}
[model_overrides]
base_width = 16
[search]
method = "optuna"
n_trials = {n}
sampler_seed = {seed}
"""


def real(
    dense: Path,
    sampler_seeds: list[int],
    *,
    n_trials: int = N_TRIALS,
    steps: int = 300,
    extra_train: str = "",
) -> dict:
    from completep_sweep.store import ResultStore

    rows = ResultStore(dense).load()
    grid = rows[(rows.depth == 2) & (rows.parameterization == "completep") & (rows.seed == 0)]
    target = float(grid.final_val_loss.min())
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in sampler_seeds:
            spec = Path(tmp) / f"optuna-{seed}.toml"
            spec.write_text(SWEEP.format(seed=seed, n=n_trials, steps=steps, extra_train=extra_train))
            t0 = time.monotonic()
            run = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "completep_sweep.cli",
                    "run",
                    str(spec),
                    "--results",
                    tmp,
                    "--no-mlflow",
                    "--max-concurrent",
                    "1",
                ],
                capture_output=True,
                text=True,
            )
            wall = time.monotonic() - t0
            if run.returncode != 0:
                sys.exit(f"completep-sweep run {spec.name} exited {run.returncode}:\n{run.stderr[-3000:]}")
            done = ResultStore(Path(tmp) / f"optuna-{seed}").load().sort_values("started_at", kind="stable")
            out.append(
                {
                    "sampler_seed": seed,
                    "trials_to_target": trials_to_target(list(done.final_val_loss), target),
                    "best": float(done.final_val_loss.min()),
                    "wall_time_s": wall,
                    "trials": len(done),
                }
            )
    return {"target": target, "grid_trials": len(grid), "n_trials": n_trials, "runs": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="synthetic studies (default 200; 5 with --quick)")
    parser.add_argument("--real", type=Path, help="results folder of benchmarks/dense-half-octave.toml")
    parser.add_argument("--sampler-seeds", type=int, nargs="+", help="default 0 1 2 (0 with --quick)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: a few synthetic studies; with --real, 4 trials of 30 steps",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {"synthetic": synthetic(args.repeats or (5 if args.quick else 200))}
    if args.real:
        seeds = args.sampler_seeds or ([0] if args.quick else [0, 1, 2])
        quick = dict(n_trials=4, steps=30, extra_train="warmup_steps = 3\neval_interval = 10")
        report["real"] = real(args.real, seeds, **(quick if args.quick else {}))
    if args.json:
        print(json.dumps(report, indent=1))
        return
    s = report["synthetic"]
    print(
        f"synthetic, {s['repeats']} studies: within 1% of the grid's best in {100 * s['reached']:.0f}% of "
        f"studies; median {s['median_trials']:g} trials (90th percentile {s['q90_trials']:g}) vs "
        f"{s['grid_trials']} grid trials"
    )
    if "real" in report:
        r = report["real"]
        print(
            f"real trials at width 32, depth 2 (grid best {r['target']:.4f} "
            f"over {r['grid_trials']} seed-0 trials):"
        )
        for run in r["runs"]:
            print(
                f"  sampler seed {run['sampler_seed']}: within 1% after "
                f"{run['trials_to_target']} trials, best "
                f"{run['best']:.4f}, {run['wall_time_s']:.0f} s for {run['trials']} trials"
            )


if __name__ == "__main__":
    main()
