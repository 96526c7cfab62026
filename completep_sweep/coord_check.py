"""Coordinate checks over depth or width (the paper's Fig. 2-style diagnostics).

Train each shape for a few steps at a fixed, moderate LR and record mean |x| at each site: the
embedding output, every residual branch output (before its multiplier), the final residual stream
(the input of the final LayerNorm) and the logits. Flat records → one DataFrame, as in mup.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data import load_source
from .optim import build_optimizer
from .parameterization import get_parameterization
from .train import build_model
from .trial import TrialConfig

# What docs/parameterizations.md says a correct implementation shows, as bounds on the log2-log2 slope of
# the final residual stream's mean |x| against the axis, at the last step. "Grows" is loose (the
# paper sees roughly ∝ L after a few steps); "flat" allows the drift a 10-step run shows.
GROWS, FLAT = (0.4, float("inf")), (-0.25, 0.25)


@dataclass(frozen=True)
class CoordCheckResult:
    records: pd.DataFrame
    """parameterization, axis, value, width, depth, seed, step, site, mean_abs."""
    slopes: dict[str, float]
    passed: dict[str, bool]


def _shape(base: TrialConfig, axis: str, value: int) -> dict[str, int]:
    if axis == "depth":
        return {"width": base.base_width, "depth": value}
    if axis == "width":
        return {"width": value, "depth": base.base_depth}
    raise ValueError(f"axis must be 'depth' or 'width' (got {axis!r})")


def _record_run(config: TrialConfig, steps: int, lr: float) -> list[dict]:
    model = build_model(config)
    opt = build_optimizer(
        model, config.rules(), lr=lr, weight_decay=0.0, eps=config.eps, betas=(config.beta1, config.beta2)
    )
    source = load_source(config.data, config.vocab_size, config.seq_len)
    seen: dict[str, float] = {}

    def keep(site):
        def hook(_module, args, output):
            x = args[0] if site == "residual" else output
            seen[site] = x.detach().abs().mean().item()

        return hook

    handles = [model.embed.register_forward_hook(keep("embedding"))]
    for i, block in enumerate(model.blocks):
        handles += [
            block.attn.register_forward_hook(keep(f"block{i}.attn")),
            block.mlp.register_forward_hook(keep(f"block{i}.mlp")),
        ]
    handles.append(model.ln_f.register_forward_hook(keep("residual")))
    rows = []
    try:
        for step in range(steps + 1):  # step 0 is the init; step k follows k updates
            x, y = source.batch(
                "train", step, batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed
            )
            logits, loss = model(x, y)
            seen["logits"] = logits.detach().abs().mean().item()
            rows += [{"step": step, "site": site, "mean_abs": v} for site, v in seen.items()]
            if step < steps:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        for h in handles:
            h.remove()
    return rows


def log_slope(values, ys) -> float:
    return float(np.polyfit(np.log2(values), np.log2(ys), 1)[0])


def expectation(parameterization: str, axis: str) -> tuple[float, float]:
    """Flat along an axis the parameterization scales for (depth: an exponent α; width: µP's width
    rules), growing along one it does not (SP: logits and updates grow with N)."""
    p = get_parameterization(parameterization)
    scales = p.alpha is not None if axis == "depth" else p.width_scaling
    return FLAT if scales else GROWS


def run_coord_check(
    base: TrialConfig,
    *,
    axis: str,
    values: list[int],
    parameterizations: list[str],
    steps: int = 10,
    lr: float = 1e-3,
    seeds: tuple[int, ...] = (0, 1),
    threads: int | None = None,
) -> CoordCheckResult:
    """Run the check; slopes use the final residual stream at the last step, averaged over seeds."""
    if threads:
        torch.set_num_threads(threads)
    rows = []
    for p in parameterizations:
        for value in values:
            for seed in seeds:
                config = base.replace(parameterization=p, seed=seed, **_shape(base, axis, value))
                meta = {
                    "parameterization": config.parameterization,
                    "axis": axis,
                    "value": value,
                    "width": config.width,
                    "depth": config.depth,
                    "seed": seed,
                }
                rows += [{**meta, **r} for r in _record_run(config, steps, lr)]
    df = pd.DataFrame.from_records(rows)
    final = (
        df[(df.site == "residual") & (df.step == steps)]
        .groupby(["parameterization", "value"])
        .mean_abs.mean()
    )
    slopes, passed = {}, {}
    for p in df.parameterization.unique():
        series = final.loc[p]
        slopes[p] = log_slope(series.index.to_numpy(), series.to_numpy())
        low, high = expectation(p, axis)
        passed[p] = bool(low <= slopes[p] <= high)
    return CoordCheckResult(df, slopes, passed)
