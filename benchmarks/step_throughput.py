"""Training-step throughput of each parameterization against the same architecture with no multipliers.

Baseline: the same Transformer with identity rules (every multiplier exactly 1, so the logit
multiply is skipped) and a stock single-group AdamW. Each parameterization runs at a non-base shape
(so its multipliers are real) with its six per-group AdamW groups. Runs are interleaved
(baseline, sp, mup, ... repeated) in one process and the median tokens/s per variant is kept, so
machine drift hits every variant alike. Reported as ratios to the baseline.

    .venv/bin/python benchmarks/step_throughput.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from completep_sweep.data import load_source
from completep_sweep.optim import build_optimizer
from completep_sweep.train import build_model
from completep_sweep.trial import TrialConfig

NAMES = ["sp", "mup", "alpha0.5", "completep"]


def make_step(config: TrialConfig, variant: str):
    """One training step of ``variant``, built as train.train_trial builds a trial (build_model, then
    build_optimizer over config.rules()); the baseline: base shape = this shape, stock AdamW."""
    if variant == "baseline":  # every multiplier 1: SP with the base shape at this shape
        config = config.replace(parameterization="sp", base_width=config.width, base_depth=config.depth)
    else:
        config = config.replace(parameterization=variant)
    model = build_model(config)
    if variant == "baseline":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    else:
        opt = build_optimizer(model, config.rules(), lr=1e-3, weight_decay=0.0, eps=1e-8, betas=(0.9, 0.95))
    source = load_source(config.data, config.vocab_size, config.seq_len)
    batches = [
        source.batch("train", i, batch_size=config.batch_size, seq_len=config.seq_len) for i in range(8)
    ]

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(step, steps: int) -> float:
    step(0)  # warm-up (allocations, first-call overhead)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: few steps, one round")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    config = TrialConfig(
        width=args.width, depth=args.depth, base_width=32, base_depth=2, seq_len=64, batch_size=16
    )
    steps, rounds = (5, 1) if args.quick else (20, 15)
    variants = ["baseline", *NAMES]
    fns = {v: make_step(config, v) for v in variants}
    tokens = steps * config.batch_size * config.seq_len
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            rates[v].append(tokens / measure(fns[v], steps))
    median = {v: statistics.median(r) for v, r in rates.items()}
    result = {
        "shape": {
            "width": config.width,
            "depth": config.depth,
            "base_width": 32,
            "base_depth": 2,
            "batch_size": config.batch_size,
            "seq_len": config.seq_len,
        },
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor()}",
        "rounds": rounds,
        "steps_per_round": steps,
        "tokens_per_s": {v: round(r) for v, r in median.items()},
        "ratio_to_baseline": {v: round(median[v] / median["baseline"], 3) for v in NAMES},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"width {config.width} depth {config.depth} (base 32x2), batch {config.batch_size}x{config.seq_len}, "
        f"{args.threads} thread(s), torch {torch.__version__}, median of {rounds} interleaved rounds"
    )
    print(f"  {'baseline':<10} {median['baseline']:>9.0f} tokens/s")
    for v in NAMES:
        print(f"  {v:<10} {median[v]:>9.0f} tokens/s   {median[v] / median['baseline']:.3f}x baseline")


if __name__ == "__main__":
    main()
