"""Where a transformer keeps each of Table 1's parameter groups: name patterns per code base.

A ``Layout`` names, by glob over ``named_modules`` / ``named_parameters`` names, the residual blocks,
the branches inside a block whose outputs join the residual stream (attention and MLP), the
embedding, the final norm, the unembedding, and the module whose output is the logits. Inside a
block, a parameter's group follows from what it is: a norm's parameters are ``block_norm``, any
other parameter of two or more dimensions ``hidden_weight``, any other vector ``hidden_bias``.
``classify`` applies a layout (and per-tensor overrides) to a model and names every parameter it
cannot place, with the fix. Defaults cover this project's model, nanoGPT and HuggingFace GPT-2 and
Llama; ``Layout`` takes any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch.nn as nn

from .parameterization import GROUPS

WEIGHT, GAIN, BIAS = "weight", "gain", "bias"


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Name patterns (fnmatch globs) that place a model's parameters in Table 1's groups."""

    name: str
    """What it is known by (``--layout``, error messages)."""
    blocks: str
    """Module names of the residual blocks, e.g. ``"transformer.h.*"`` (one match per block)."""
    branches: tuple[str, ...]
    """Child module names, relative to a block, whose outputs are residual branches F(·) in
    h <- h + F(LN(h)): the residual multiplier m_L^-α scales their outputs."""
    embedding: tuple[str, ...]
    """Parameter names of the token (and position) embeddings."""
    final_norm: tuple[str, ...]
    """Parameter names of the norm after the last block."""
    unembedding: tuple[str, ...]
    """Parameter names of the output projection (absent when tied to the embedding)."""
    output: str
    """Module name whose output are the logits: the output multiplier m_N^-1 scales it."""


LAYOUTS: Mapping[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            name="completep",  # this project's model.Transformer
            blocks="blocks.*",
            branches=("attn", "mlp"),
            embedding=("embed.*",),
            final_norm=("ln_f.*",),
            unembedding=("lm_head.*",),
            output="lm_head",
        ),
        Layout(
            name="gpt2",  # HuggingFace GPT2LMHeadModel and nanoGPT's GPT (same names)
            blocks="transformer.h.*",
            branches=("attn", "mlp"),
            embedding=("transformer.wte.*", "transformer.wpe.*"),
            final_norm=("transformer.ln_f.*",),
            unembedding=("lm_head.*",),
            output="lm_head",
        ),
        Layout(
            name="llama",  # HuggingFace LlamaForCausalLM (and Mistral, Qwen2: the same names)
            blocks="model.layers.*",
            branches=("self_attn", "mlp"),
            embedding=("model.embed_tokens.*",),
            final_norm=("model.norm.*",),
            unembedding=("lm_head.*",),
            output="lm_head",
        ),
    )
}


def is_norm(module: nn.Module) -> bool:
    """LayerNorm, RMSNorm, or any module whose class name ends in Norm (LlamaRMSNorm, ...)."""
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith("Norm")


def param_kind(module: nn.Module, attr: str) -> str | None:
    """weight (a matrix), gain (a norm's weight) or bias, from the type of the module that owns the
    parameter; None for a module type it does not know (``classify`` then goes by shape)."""
    if is_norm(module):
        return {"weight": GAIN, "bias": BIAS}.get(attr)
    if isinstance(module, (nn.Linear, nn.Embedding)) or type(module).__name__ == "Conv1D":  # HF GPT-2
        return {"weight": WEIGHT, "bias": BIAS}.get(attr)
    return None


def _matches(name: str, patterns) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


_FIRST: ContextVar[Layout | None] = ContextVar("completep_sweep_first_layout", default=None)


@contextmanager
def preferring(layout: Layout | None):
    """Inside, ``detect`` tries ``layout`` before the known ones (the `check` command's --layout):
    a context variable, so no shared table changes and other threads see the defaults."""
    token = _FIRST.set(layout)
    try:
        yield
    finally:
        _FIRST.reset(token)


def detect(model: nn.Module) -> Layout:
    """The default layout whose blocks, embedding and output all exist in ``model`` (one set by
    ``preferring`` first)."""
    modules = dict(model.named_modules())
    params = [n for n, _ in model.named_parameters()]
    first = _FIRST.get()
    for layout in ([first] if first else []) + [v for v in LAYOUTS.values() if v is not first]:
        if (
            any(fnmatchcase(n, layout.blocks) and n.count(".") == layout.blocks.count(".") for n in modules)
            and any(_matches(n, layout.embedding) for n in params)
            and layout.output in modules
        ):
            return layout
    raise ValueError(
        f"no known layout fits {type(model).__name__} (known: {', '.join(LAYOUTS)}); pass "
        "layout=Layout(blocks=..., branches=..., embedding=..., final_norm=..., unembedding=..., "
        "output=...) naming where its blocks and embeddings are"
    )


def block_names(model: nn.Module, layout: Layout) -> list[str]:
    depth = layout.blocks.count(".")
    return [n for n, _ in model.named_modules() if fnmatchcase(n, layout.blocks) and n.count(".") == depth]


def classify(
    model: nn.Module, layout: Layout, overrides: Mapping[str, str] | None = None
) -> dict[str, tuple[str, str]]:
    """Every parameter's (group, kind) by name, shared tensors once (under their first name).

    ``overrides`` (parameter-name glob -> group) are tried first; then the layout's embedding, final
    norm and unembedding patterns; then, inside a block, what the parameter is. Raises ValueError
    naming each parameter left unplaced and how to place it.
    """
    overrides = dict(overrides or {})
    for glob, group in overrides.items():
        if group not in GROUPS:
            raise ValueError(f"roles: {glob!r} -> {group!r} is not a group; use one of {', '.join(GROUPS)}")
    blocks = [b + "." for b in block_names(model, layout)]
    table, unplaced = {}, []
    for name, p in model.named_parameters():  # shared tensors appear once
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        norm = is_norm(owner)
        kind = param_kind(owner, attr)
        group = next((g for glob, g in overrides.items() if fnmatchcase(name, glob)), None)
        if kind is None:  # a raw parameter of a module type it does not know: only an override says
            if group is None:
                unplaced.append(name)
                continue
            kind = WEIGHT if p.ndim >= 2 else GAIN if group.endswith("norm") and attr == "weight" else BIAS
        if group is None:
            for g in ("embedding", "final_norm", "unembedding"):
                if _matches(name, getattr(layout, g)):
                    group = g
                    break
        if group is None and any(name.startswith(b) for b in blocks):
            group = "block_norm" if norm else ("hidden_weight" if kind == WEIGHT else "hidden_bias")
        if group is None:
            unplaced.append(name)
        else:
            table[name] = (group, kind)
    if unplaced:
        raise ValueError(
            f"parameter(s) {', '.join(unplaced)} belong to no Table 1 group under layout {layout.name!r}; "
            f"place them with roles={{'{unplaced[0]}': '<group>'}} (groups: {', '.join(GROUPS)})"
        )
    return table
