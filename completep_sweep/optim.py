"""AdamW with one param group per rule group, and the one shared LR schedule.

As in microsoft/mup's MuAdamW, the parameterization enters the optimizer only as per-group
multipliers around a stock optimizer: ``lr_scale``, weight decay and ε per group. Every step sets
``group["lr"] = scheduled_lr(step) × group["lr_scale"]``; no scheduler ever overwrites the scale.
The multipliers come from the ``ScalingRules`` passed in (``TrialConfig.rules()``); the model only
says which parameter is in which group.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .parameterization import ScalingRules

if TYPE_CHECKING:  # model.py builds on parameterize.py, which re-exports this module's schedule
    from .model import Transformer


def param_groups(model: Transformer, rules: ScalingRules, *, weight_decay: float, eps: float) -> list[dict]:
    """AdamW param groups: the model's parameters by rule group, with base λ and ε times the group's
    multipliers from ``rules`` (docs/parameterizations.md). ``rules`` must be for the model's shape."""
    if (rules.width, rules.depth) != (model.cfg.width, model.cfg.depth):
        raise ValueError(
            f"rules are for shape {(rules.width, rules.depth)}, model is {(model.cfg.width, model.cfg.depth)}"
        )
    groups = []
    for name, named in model.param_groups().items():
        if not named:
            continue  # e.g. hidden_bias when the preset has no biases
        rule = rules.groups[name]
        groups.append(
            {
                "name": name,
                "params": [p for _, p in named],
                "lr_scale": rule.lr_mult,
                "weight_decay": weight_decay * rule.weight_decay_mult,
                "eps": eps * rule.eps_mult,
            }
        )
    return groups


def build_optimizer(
    model: Transformer,
    rules: ScalingRules,
    *,
    lr: float,
    weight_decay: float,
    eps: float,
    betas: tuple[float, float],
) -> torch.optim.AdamW:
    """Stock AdamW over ``param_groups(model, rules, ...)``, each group's LR at ``lr × lr_scale``."""
    groups = param_groups(model, rules, weight_decay=weight_decay, eps=eps)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    on_cuda = next(model.parameters()).device.type == "cuda"
    # Fused AdamW is the fast path on GPUs; on CPU PyTorch picks its default implementation.
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True if on_cuda else None)


# Decay from 1 to 0 over progress in [0, 1]; one entry per name in trial.DECAYS (tested).
DECAY_SHAPES = {"cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)), "linear": lambda p: 1.0 - p}


def lr_at(
    step: int, *, lr: float, total_steps: int, warmup_steps: int, decay: str, final_lr_ratio: float
) -> float:
    """Base LR at ``step`` (0-based): linear warmup to ``lr``, then decay to ``final_lr_ratio × lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if decay == "constant":
        return lr
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    shape = DECAY_SHAPES[decay](progress)  # the names are checked once, by TrialConfig
    return lr * (final_lr_ratio + (1.0 - final_lr_ratio) * shape)


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g["lr_scale"]
