"""Pre-LN decoder-only transformer whose multipliers come from ``ScalingRules``.

The architecture is fixed across parameterizations; only three things from the rules touch it: the
per-group init std multipliers, the residual-branch multiplier and the output (logit) multiplier.
Learning rates, weight decay and ε are the optimizer's business (optim.py).

Every parameter is classified once (``Transformer.param_table``) by the same library that applies
Table 1 to any model (``layouts.classify``): its rule group and its kind (weight, gain or bias, from
the type of the module owning it); ``parameterize.INIT`` maps (group, kind) to how it starts.
docs/parameterizations.md states the contract. The two multipliers are applied in ``forward`` here
(fused into the residual add) rather than by the library's hooks: the same factors, no hook cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layouts import BIAS, GAIN, LAYOUTS, WEIGHT, classify, param_kind  # noqa: F401 - re-exported
from .parameterization import GROUPS, ScalingRules
from .parameterize import INIT, NORMAL, ONES, ZEROS, initialise  # noqa: F401 - re-exported
from .shape import ModelConfig

# What a parameter is and how it starts are declared once, in the library that applies Table 1 to
# any transformer (layouts.py, parameterize.py); this model is placed and initialised by it too.
KINDS = (WEIGHT, GAIN, BIAS)


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
        """Every parameter's (group, kind) by name (shared tensors once), placed by the library's
        ``layouts.classify`` with this model's layout; a parameter it cannot place is a ValueError
        naming it. When tied, the shared matrix is the embedding (its LR/WD rules apply)."""
        return classify(self, LAYOUTS["completep"])

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter in exactly one group of docs/parameterizations.md, or a ValueError naming it."""
        table = self.param_table()
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
        for name, p in self.named_parameters():
            groups[table[name][0]].append((name, p))
        return groups

    def _init_weights(self) -> None:
        """Each parameter as ``parameterize.INIT[(group, kind)]`` says, σ_base = ``cfg.init_std``."""
        initialise(self, self.rules, self.param_table(), self.cfg.init_std)

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
