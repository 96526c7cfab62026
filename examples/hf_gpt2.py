"""HuggingFace GPT-2 under any Table 1 parameterization: the factory ``completep-sweep check`` takes.

``build(parameterization, width, depth, base_width, base_depth)`` returns ``(model, optimizer)``: a
``GPT2LMHeadModel`` from a config (random weights, nothing downloaded; byte vocabulary, no dropout)
with ``completep_sweep.parameterize`` applied, and AdamW over its param groups (each Table 1 group
with its lr, ε and weight decay)::

    completep-sweep check --model examples.hf_gpt2:build --parameterization completep
"""

from __future__ import annotations

import torch

from completep_sweep.parameterize import parameterize

LR, WEIGHT_DECAY, EPS, INIT_STD = 2.0**-7, 0.1, 1e-8, 0.02
"""Base hyperparameters, tuned at the base shape: the rules scale them at every other shape."""
HEAD_DIM, VOCAB, CONTEXT = 16, 256, 64


def gpt2(width: int, depth: int):
    """A GPT-2 of this width and depth from a config: heads of HEAD_DIM, bytes, no dropout."""
    import transformers

    config = transformers.GPT2Config(
        n_embd=width, n_layer=depth, n_head=max(1, width // HEAD_DIM), vocab_size=VOCAB, n_positions=CONTEXT,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def build(parameterization: str, width: int, depth: int, base_width: int, base_depth: int):
    """The model at (width, depth) and its optimizer, Table 1 applied for the base shape."""
    model = gpt2(width, depth)
    p = parameterize(
        model,
        parameterization,
        width=width,
        depth=depth,
        base_width=base_width,
        base_depth=base_depth,
        init_std=INIT_STD,
    )
    groups = p.param_groups(lr=LR, weight_decay=WEIGHT_DECAY, eps=EPS)
    return model, torch.optim.AdamW(groups, betas=(0.9, 0.95))
