"""The classic bugs, each planted in the correct HuggingFace GPT-2 factory (examples/hf_gpt2.py) by
breaking one thing: ``completep-sweep check --model planted_models:<name>`` must fail naming it.

A helper module for tests/test_check.py (not a test module: test modules never import each other)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # examples/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from completep_sweep.parameterize import parameterize  # noqa: E402
from examples.hf_gpt2 import EPS, INIT_STD, LR, WEIGHT_DECAY, build, gpt2  # noqa: E402


def _group(opt, name: str) -> dict:
    return next(g for g in opt.param_groups if g.get("name") == name)


def no_residual_multiplier(parameterization, width, depth, base_width, base_depth):
    """The branches' outputs join the residual stream unscaled (parameterize's hooks removed)."""
    model, opt = build(parameterization, width, depth, base_width, base_depth)
    for block in model.transformer.h:
        block.attn._forward_hooks.clear()
        block.mlp._forward_hooks.clear()
    return model, opt


def embedding_lr_scaled(parameterization, width, depth, base_width, base_depth):
    """µP's hidden lr factor m_N^-1 put on the embedding too."""
    model, opt = build(parameterization, width, depth, base_width, base_depth)
    _group(opt, "embedding")["lr"] *= base_width / width
    return model, opt


def block_eps_unscaled(parameterization, width, depth, base_width, base_depth):
    """AdamW's ε of the block norms left at ε_base (Table 1: m_N^-1 · m_L^-α)."""
    model, opt = build(parameterization, width, depth, base_width, base_depth)
    _group(opt, "block_norm")["eps"] = EPS
    return model, opt


@torch.no_grad()
def hidden_init_not_rescaled(parameterization, width, depth, base_width, base_depth):
    """Hidden matrices drawn with σ_base at every width (Table 1: σ_base · m_N^-1/2)."""
    model, opt = build(parameterization, width, depth, base_width, base_depth)
    for p in _group(opt, "hidden_weight")["params"]:
        p.normal_(0.0, INIT_STD)
    return model, opt


def no_output_multiplier(parameterization, width, depth, base_width, base_depth):
    """The logits not scaled by m_N^-1 (parameterize's hook on lm_head removed)."""
    model, opt = build(parameterization, width, depth, base_width, base_depth)
    model.lm_head._forward_hooks.clear()
    return model, opt


def gated(parameterization, width, depth, base_width, base_depth):
    """Correct, with a tensor no layout places (a gain ``gate`` in every block): ``--roles`` must."""
    model = gpt2(width, depth)
    for block in model.transformer.h:
        block.gate = torch.nn.Parameter(torch.ones(width))
    p = parameterize(
        model, parameterization, width=width, depth=depth, base_width=base_width, base_depth=base_depth,
        roles=GATE_ROLES,
    )  # fmt: skip
    return model, torch.optim.AdamW(p.param_groups(lr=LR, weight_decay=WEIGHT_DECAY, eps=EPS))


def model_only(parameterization, width, depth, base_width, base_depth):
    """Forgets the optimizer."""
    return build(parameterization, width, depth, base_width, base_depth)[0]


def fails_when_wide(parameterization, width, depth, base_width, base_depth):
    """Builds at the base shape (so the input is fine), raises at any other width."""
    if width != base_width:
        raise ValueError(f"width {width} is not supported")
    return build(parameterization, width, depth, base_width, base_depth)


GATE_ROLES = {"transformer.h.*.gate": "hidden_bias"}
PLANTED = {
    "no_residual_multiplier": "residual multiplier",
    "embedding_lr_scaled": "static embedding",
    "block_eps_unscaled": "static block_norm",
    "hidden_init_not_rescaled": "static hidden_weight",
    "no_output_multiplier": "output multiplier",
}
"""Each planted bug and the check that must fail on it."""
