"""Pre-LN decoder-only transformer whose multipliers come from ``ScalingRules``.

The architecture is fixed across parameterizations; only four numbers from the rules touch it:
per-group init std multipliers, the residual-branch multiplier and the output (logit) multiplier.
Learning rates, weight decay and ε are the optimizer's business (optim.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .parameterization import GROUPS, ScalingRules
from .shape import ModelConfig


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
            raise ValueError(f"rules are for shape {(rules.width, rules.depth)}, model is {(cfg.width, cfg.depth)}")
        self.cfg, self.rules = cfg, rules
        self.output_multiplier = rules.output_multiplier
        self.embed = Embedding(cfg)
        self.blocks = nn.ModuleList(Block(cfg, rules.residual_multiplier) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.width, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.wte.weight
        self._init_weights()

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Every parameter in exactly one group of PARAMETERIZATIONS.md, or a ValueError naming it."""
        by_id: dict[int, str] = {}
        for block in self.blocks:
            for m in block.modules():
                if isinstance(m, nn.LayerNorm):
                    by_id.update((id(p), "block_norm") for p in m.parameters(recurse=False))
                elif isinstance(m, nn.Linear):
                    by_id[id(m.weight)] = "hidden_weight"
                    if m.bias is not None:
                        by_id[id(m.bias)] = "hidden_bias"
        by_id.update((id(p), "final_norm") for p in self.ln_f.parameters())
        by_id[id(self.lm_head.weight)] = "unembedding"
        # Embedding last: when tied, the shared matrix is the embedding (its LR/WD rules apply).
        by_id.update((id(p), "embedding") for p in self.embed.parameters())
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {g: [] for g in GROUPS}
        for name, p in self.named_parameters():  # shared tensors appear once
            if id(p) not in by_id:
                raise ValueError(f"parameter {name!r} belongs to no parameter group; classify it in Transformer.param_groups")
            groups[by_id[id(p)]].append((name, p))
        return groups

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Init std = σ_base × the group's init_std_mult; norms at (1, 0), biases at 0."""
        sigma = self.cfg.init_std
        for group, params in self.param_groups().items():
            mult = self.rules.groups[group].init_std_mult
            for name, p in params:
                if mult is not None and p.dim() >= 2:
                    nn.init.normal_(p, mean=0.0, std=sigma * mult)
                elif name.endswith("weight") and group in ("block_norm", "final_norm"):
                    nn.init.ones_(p)
                else:
                    nn.init.zeros_(p)

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

