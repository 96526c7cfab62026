"""The architecture at one shape, and what it costs: torch-free, so sweeps are sized without models.

``ModelConfig`` is what ``model.Transformer`` builds; ``TrialConfig.model_config()`` derives it from
the trial's fields of the same names, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import FieldError


class ShapeError(FieldError):
    """A shape the architecture cannot build; ``field`` names the setting to change."""


def check_heads(width: int, head_dim: int, *, field: str = "width") -> None:
    """Heads are width / head_dim with head_dim fixed across widths, so width must divide evenly."""
    if width % head_dim:
        raise ShapeError(
            field,
            f"width {width} is not a multiple of head_dim {head_dim}; "
            f"use widths that are multiples of {head_dim}",
        )


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The pre-LN decoder at one shape (the scaling rules say how it is multiplied)."""

    width: int
    """d_model N."""
    depth: int
    """Number of pre-LN blocks L."""
    head_dim: int
    """Fixed across widths; heads = width / head_dim."""
    vocab_size: int
    """Token vocabulary size."""
    seq_len: int
    """Maximum sequence length (learned positional embedding size)."""
    mlp_ratio: int = 4
    """MLP hidden size = mlp_ratio × width."""
    bias: bool = True
    """Biases in the block linears (the hidden_bias group) and in every LayerNorm (norm groups)."""
    tie_embeddings: bool = False
    """Share the embedding matrix with the unembedding."""
    attn_scale: float | None = None
    """Attention logit scale; None = 1/sqrt(head_dim) (fixed, since head_dim is fixed)."""
    init_std: float = 0.02
    """σ_base."""

    def __post_init__(self) -> None:
        check_heads(self.width, self.head_dim)

    @property
    def n_heads(self) -> int:
        return self.width // self.head_dim

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 × matmul weights (QKV, out, MLP, unembedding) + 12 × L × T × N.

        The second term is attention scores and their weighted sum (forward 4·L·T·N, ×3 for
        training); embedding lookups do no matmul.
        """
        n, depth = self.width, self.depth
        matmul_weights = depth * (4 + 2 * self.mlp_ratio) * n * n + self.vocab_size * n
        return 6.0 * matmul_weights + 12.0 * depth * self.seq_len * n

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
