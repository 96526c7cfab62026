"""Pre-LN decoder-only transformer whose multipliers come from ``ScalingRules``.

The architecture is fixed across parameterizations; only three things from the rules touch it: the
per-group init std multipliers, the residual-branch multiplier and the output (logit) multiplier.
Learning rates, weight decay and ε are the optimizer's business (optim.py).

Every parameter is classified once (``Transformer.param_table``): its rule group and its kind
(weight, gain or bias, from the type of the module owning it). ``INIT`` maps (group, kind) to how it
starts; docs/parameterizations.md states the contract.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn as nn
import torch.nn.functional as F

from .parameterization import GROUPS, ScalingRules
from .shape import ModelConfig

# ---------------------------------------------------------------- initialisation, declared once

# What a parameter is, from the type of the module that owns it (``param_kind``).
WEIGHT, GAIN, BIAS = "weight", "gain", "bias"
KINDS = (WEIGHT, GAIN, BIAS)
# How it starts.
NORMAL, ONES, ZEROS = "normal", "ones", "zeros"

INIT: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        # Matrices: normal, std = σ_base × the group's init_std_mult (ScalingRules); hidden weights
        # get m_N^-1/2 under width scaling, the embedding and unembedding keep σ_base.
        ("embedding", WEIGHT): NORMAL,
        ("hidden_weight", WEIGHT): NORMAL,
        ("unembedding", WEIGHT): NORMAL,
        # Project choices (docs/parameterizations.md; the paper is silent): LayerNorm gains start at
        # 1 and biases at 0, biases of the block linears at 0. No rule scales these.
        ("block_norm", GAIN): ONES,
        ("block_norm", BIAS): ZEROS,
        ("final_norm", GAIN): ONES,
        ("final_norm", BIAS): ZEROS,
        ("hidden_bias", BIAS): ZEROS,
    }
)
"""(group, kind) -> init rule, for every (group, kind) the model builds."""


def param_kind(module: nn.Module, attr: str) -> str | None:
    """weight (a Linear or Embedding matrix), gain (a LayerNorm's weight) or bias; None for a parameter
    of a module type the model does not classify (``Transformer.param_table`` then names it)."""
    if isinstance(module, nn.LayerNorm):
        return {"weight": GAIN, "bias": BIAS}.get(attr)
    if isinstance(module, (nn.Linear, nn.Embedding)):
        return {"weight": WEIGHT, "bias": BIAS}.get(attr)
    return None


def param_group(region: str, module: nn.Module, kind: str) -> str:
    """The rule group of a ``kind`` parameter owned by ``module`` in a region of the model.

    Regions: ``block`` (inside a pre-LN block), ``embedding``, ``final_norm`` and ``unembedding``; the
    last three are one group each. In a block, LayerNorm parameters are ``block_norm``, Linear
    weights ``hidden_weight`` and Linear biases ``hidden_bias``.
    """
    if region != "block":
        return region
    if isinstance(module, nn.LayerNorm):
        return "block_norm"
    return "hidden_weight" if kind == WEIGHT else "hidden_bias"


# ---------------------------------------------------------------- the architecture


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else 1.0 / math.sqrt(cfg.head_dim)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=cfg.bias)
        self.proj = nn.Linear(cfg.width, cfg.width, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.up = nn.Linear(cfg.width, cfg.mlp_ratio * cfg.width, bias=cfg.bias)
        self.down = nn.Linear(cfg.mlp_ratio * cfg.width, cfg.width, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, residual_multiplier: float):
        super().__init__()
        self.residual_multiplier = residual_multiplier
        self.ln_1 = nn.LayerNorm(cfg.width, bias=cfg.bias)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.width, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # h <- h + m_L^-α · F(LN(h)); add(alpha=) fuses the scale, so the multiplier costs nothing.
        x = torch.add(x, self.attn(self.ln_1(x)), alpha=self.residual_multiplier)
        return torch.add(x, self.mlp(self.ln_2(x)), alpha=self.residual_multiplier)


class Embedding(nn.Module):
    """Token plus learned positional embedding (one module so hooks see its output)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.width)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.width)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.wte(idx) + self.wpe(pos)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, rules: ScalingRules):
        super().__init__()
        if (cfg.width, cfg.depth) != (rules.width, rules.depth):
            raise ValueError(
                f"rules are for shape {(rules.width, rules.depth)}, model is {(cfg.width, cfg.depth)}"
            )
        self.cfg, self.rules = cfg, rules
        self.output_multiplier = rules.output_multiplier
        self.embed = Embedding(cfg)
        self.blocks = nn.ModuleList(Block(cfg, rules.residual_multiplier) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.width, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.wte.weight
        self._init_weights()

    def param_table(self) -> dict[str, tuple[str, str]]:
        """Every parameter's (group, kind) by name, decided here once (shared tensors appear once).

        Kind from the owning module's type (``param_kind``), group from its region (``param_group``).
        A parameter neither covers is a ValueError naming it.
        """
        regions = [
            *((block, "block") for block in self.blocks),
            (self.ln_f, "final_norm"),
            (self.lm_head, "unembedding"),
            # Embedding last: when tied, the shared matrix is the embedding (its LR/WD rules apply).
            (self.embed, "embedding"),
        ]
        by_id: dict[int, tuple[str, str]] = {}
        for root, region in regions:
            for module in root.modules():
                for attr, p in module.named_parameters(recurse=False):
                    kind = param_kind(module, attr)
                    if kind is not None:
                        by_id[id(p)] = (param_group(region, module, kind), kind)
        table = {}
        for name, p in self.named_parameters():  # shared tensors appear once
            if id(p) not in by_id:
                raise ValueError(
                    f"parameter {name!r} belongs to no parameter group; classify it in "
                    "Transformer.param_table (model.py)"
                )
            table[name] = by_id[id(p)]
        return table

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter in exactly one group of docs/parameterizations.md, or a ValueError naming it."""
        table = self.param_table()
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
        for name, p in self.named_parameters():
            groups[table[name][0]].append((name, p))
        return groups

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Each parameter as ``INIT[(group, kind)]`` says; normal draws have std σ_base × init_std_mult.

        Parameters are visited group by group in ``GROUPS`` order, then in module order: that is the
        order of the random draws, so it fixes every initial weight for a seed (do not reorder).
        """
        table = self.param_table()
        for group, params in self.param_groups().items():
            for name, p in params:
                kind = table[name][1]
                rule = INIT.get((group, kind))
                if rule == NORMAL:
                    mult = self.rules.groups[group].init_std_mult
                    if mult is None:
                        raise ValueError(
                            f"parameter {name!r}: group {group} has no init_std_mult in the rules"
                        )
                    nn.init.normal_(p, mean=0.0, std=self.cfg.init_std * mult)
                elif rule == ONES:
                    nn.init.ones_(p)
                elif rule == ZEROS:
                    nn.init.zeros_(p)
                else:
                    raise ValueError(
                        f"parameter {name!r} ({group}, {kind}) has no init rule; add one to model.INIT"
                    )

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx, targets: (B, T) token ids. Returns logits (B, T, V) and the mean loss (or None)."""
        x = self.embed(idx)  # (B, T, N)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if self.output_multiplier != 1.0:
            logits = logits * self.output_multiplier
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def flops_per_token(self) -> float:
        return self.cfg.flops_per_token()
