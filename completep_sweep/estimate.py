"""GPU-hours for a sweep whose trials ask for GPUs, from the model's FLOPs and a per-GPU throughput.

A trial's training FLOPs (``TrialConfig.flops``: 6 × matmul weights + attention, per token, times its
tokens) divided by a sustained throughput. Fractional GPUs do not change the total: a trial on half a
GPU runs at about half the rate for twice as long. The throughput is a stated assumption until one is
measured: ``COMPLETEP_GPU_TFLOPS`` (set it to what ``benchmarks/gpu_check.py`` prints on your device)
replaces it.
"""

from __future__ import annotations

import os

GPU_TFLOPS_ENV = "COMPLETEP_GPU_TFLOPS"
ASSUMED_GPU_TFLOPS = 50.0
"""Sustained model TFLOP/s per GPU when none was measured: about 5% of an H100's dense bf16 peak
(989 TFLOP/s), what small models (width 256-1024, sequence 2048) reach without kernel tuning. An
assumption, stated wherever it is used."""


def gpu_throughput() -> tuple[float, str]:
    """(TFLOP/s per GPU, where the number comes from)."""
    raw = os.environ.get(GPU_TFLOPS_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value > 0:
        return value, f"{GPU_TFLOPS_ENV}={raw}, measured"
    return ASSUMED_GPU_TFLOPS, f"assumed: set {GPU_TFLOPS_ENV} to a measured one, see benchmarks/gpu_check.py"


def gpu_hours(flops: float) -> float:
    tflops, _ = gpu_throughput()
    return flops / (tflops * 1e12) / 3600.0


def most_work(reach, count: int, price) -> float:
    """The most ``count`` more trials can cost: placed on the dearest shapes first, each up to the
    trials the search may take there (``reach``: (a trial of the shape, its most), Plan.reach). An
    average over the pending trials would price a search that goes deeper (``max_depth``) at its
    shallower first rounds."""
    total = 0.0
    for config, most in sorted(reach, key=lambda r: -price(r[0])):
        n = min(most, max(count, 0))
        total, count = total + n * price(config), count - n
    return total


def gpu_line(pending, *, low: int, high: int, done: int, template, reach=None) -> str:
    """One line for ``validate``: the GPU-hours still to spend (a range for an adaptive search,
    whose most is priced at the shapes it can reach, ``most_work``)."""
    tflops, source = gpu_throughput()
    per_trial = sum(t.flops for t in pending) / len(pending) if pending else template.flops
    if low == high and len(pending) + done == low:  # a grid: the pending trials are all of them
        span = f"about {gpu_hours(sum(t.flops for t in pending)):,.0f} GPU-hours"
    else:
        lo = gpu_hours(max(0, low - done) * per_trial)
        most = high - done
        hi = gpu_hours(most_work(reach, most, lambda t: t.flops) if reach else max(0, most) * per_trial)
        span = f"about {lo:,.0f} (fewest trials) to {hi:,.0f} (most) GPU-hours"
    return f"  GPU work: {span} at {tflops:g} TFLOP/s per GPU ({source})"
