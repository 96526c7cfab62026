"""Laziness check (the paper's Fig. 6): how far one block's update is from its linearization.

For depth L at the base width: one AdamW step on one batch moves every parameter by dtheta. For
the first block's residual branch F (its attention and MLP sub-branches, before the residual
multiplier) on that block's input h, compare the true change with its first-order prediction:

    distance(L) = || F(h; theta + dtheta) - F(h; theta) - J dtheta ||
                  / || F(h; theta + dtheta) - F(h; theta) ||

(J dtheta by a central difference in float64, exact to O(eps^2): forward-mode autodiff has no CPU
kernel for scaled-dot-product attention). In a lazy regime the update is small enough that the
block moves like its linearization: the distance falls as depth grows. Adam moves each weight by
about its group's learning rate, and the α family scales the hidden learning rate by m_L^(α-1),
so the distance goes like L^(α-1): it decays like L^-1/2 for α = 0.5 and stays flat for α = 1
(CompleteP: complete feature learning); SP and µP have no depth factor (flat). Reported as the
slope of log2 distance against log2 L, with PASS within ±0.25 of that expectation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call

from .coord_check import log_slope
from .data import load_source
from .optim import build_optimizer
from .parameterization import get_parameterization
from .train import build_model
from .trial import TrialConfig

TOLERANCE = 0.25


@dataclass(frozen=True)
class LazyCheckResult:
    records: pd.DataFrame
    """parameterization, depth, seed, distance."""
    slopes: dict[str, float]
    expected: dict[str, float]
    passed: dict[str, bool]


def expected_slope(parameterization: str) -> float:
    """log2 distance vs log2 L: α - 1 for the α family, 0 without a depth exponent."""
    alpha = get_parameterization(parameterization).alpha
    return 0.0 if alpha is None else alpha - 1.0


def distance(config: TrialConfig, lr: float) -> float:
    """Relative distance from linearization of block 0's branch after one AdamW step."""
    model = build_model(config)
    source = load_source(config.data, config.vocab_size, config.seq_len)
    x, y = source.batch("train", 0, batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed)
    block = model.blocks[0]
    with torch.no_grad():
        h = model.embed(x).double()  # block 0's input, (B, T, N)

    def branch(params: dict[str, torch.Tensor]) -> torch.Tensor:
        def sub(name, module, inp):
            own = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(name + ".")}
            return functional_call(module, own, (inp,))

        ln1 = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("ln_1.")}
        ln2 = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("ln_2.")}
        a = sub("attn", block.attn, functional_call(block.ln_1, ln1, (h,)))
        m = sub("mlp", block.mlp, functional_call(block.ln_2, ln2, (h,)))
        return torch.cat([a, m], dim=-1)

    before = {k: v.detach().double().clone() for k, v in block.named_parameters()}
    opt = build_optimizer(
        model, config.rules(), lr=lr, weight_decay=0.0, eps=config.eps, betas=(config.beta1, config.beta2)
    )
    _, loss = model(x, y)
    loss.backward()
    opt.step()
    after = {k: v.detach().double().clone() for k, v in block.named_parameters()}
    delta = {k: after[k] - before[k] for k in before}
    block.double()
    eps = 1e-4
    with torch.no_grad():
        change = branch(after) - branch(before)
        plus = branch({k: before[k] + eps * delta[k] for k in before})
        minus = branch({k: before[k] - eps * delta[k] for k in before})
    linear = (plus - minus) / (2 * eps)
    return float((change - linear).norm() / change.norm())


def run_lazy_check(
    base: TrialConfig,
    *,
    depths: list[int],
    parameterizations: list[str],
    lr: float = 2.0**-7,
    seeds: tuple[int, ...] = (0, 1),
) -> LazyCheckResult:
    rows = []
    for p in parameterizations:
        for depth in depths:
            for seed in seeds:
                config = base.replace(parameterization=p, depth=depth, width=base.base_width, seed=seed)
                rows.append(
                    {
                        "parameterization": config.parameterization,
                        "depth": depth,
                        "seed": seed,
                        "distance": distance(config, lr),
                    }
                )
    df = pd.DataFrame(rows)
    means = df.groupby(["parameterization", "depth"])["distance"].mean()
    slopes, expected, passed = {}, {}, {}
    for p in dict.fromkeys(df["parameterization"]):
        series = means.loc[p]
        slopes[p] = log_slope(series.index.to_numpy(), series.to_numpy())
        expected[p] = expected_slope(p)
        passed[p] = bool(abs(slopes[p] - expected[p]) <= TOLERANCE and np.isfinite(slopes[p]))
    return LazyCheckResult(df, slopes, expected, passed)
