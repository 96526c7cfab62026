"""One trial's inputs (``TrialConfig``) and its one-row outcome (``TrialResult``).

``trial_id`` is a content hash of every field that can change the result, plus the rules version,
so re-running a sweep recognises finished trials and extending a grid only runs new points.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .parameterization import RULES_VERSION, get_parameterization

_POSITIVE_INTS = (
    "width", "depth", "base_width", "base_depth", "head_dim", "vocab_size", "seq_len", "mlp_ratio",
    "steps", "batch_size", "eval_interval", "eval_batches",
)
_POSITIVE_FLOATS = ("lr", "init_std", "eps", "divergence_factor")
_EXAMPLES = {"lr": "0.0078125 (2^-7)", "init_std": 0.02, "eps": 1e-8, "divergence_factor": 2.0}
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_NON_NEGATIVE = ("weight_decay", "final_lr_ratio", "grad_clip")
_NON_NEGATIVE_INTS = ("warmup_steps", "seed")
DECAYS = ("cosine", "linear", "constant")

def flops_per_token(*, width: int, depth: int, vocab_size: int, seq_len: int, mlp_ratio: int = 4) -> float:
    """Training FLOPs per token: 6 × matmul weights (QKV, out, MLP, unembedding) + 12 × L × T × N.

    The second term is attention scores and their weighted sum (forward 4·L·T·N, ×3 for training);
    embedding lookups do no matmul. Analytic, so sweeps are estimated without building models.
    """
    matmul_weights = depth * (4 + 2 * mlp_ratio) * width * width + vocab_size * width
    return 6.0 * matmul_weights + 12.0 * depth * seq_len * width


class ConfigError(ValueError):
    """A bad TrialConfig value; ``field`` names it so callers can say where it was set."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# Fields that label or place a trial but cannot change its numbers.
NON_RESULT_FIELDS = frozenset({"sweep", "model"})


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    """Everything one training run needs. Flat, so it hashes, sweeps and logs as one record."""

    sweep: str = "adhoc"
    """Sweep name (the results folder and MLflow experiment); not part of trial_id."""
    model: str = "tiny"
    """Name of the model preset this trial came from; informational, the fields below are what count."""
    parameterization: str = "completep"
    """sp, mup, completep or alphaX (X in [0.5, 1])."""
    width: int = 64
    """d_model N of this trial."""
    depth: int = 2
    """Number of pre-LN blocks L."""
    base_width: int = 32
    """N_base: width at which the base HPs are tuned (all multipliers are 1 there)."""
    base_depth: int = 2
    """L_base: depth at which the base HPs are tuned."""
    head_dim: int = 16
    """Fixed across widths: heads = width / head_dim."""
    vocab_size: int = 256
    """Vocabulary size (256 for the built-in byte-level corpus)."""
    seq_len: int = 64
    """Tokens per sequence."""
    mlp_ratio: int = 4
    """MLP hidden size = mlp_ratio × width."""
    bias: bool = True
    """Whether block linears have biases (hidden_bias group)."""
    tie_embeddings: bool = False
    """Tie unembedding to the embedding (untied by default, as in the paper)."""
    attn_scale: float | None = None
    """Attention logit scale; None means 1/sqrt(head_dim), fixed across widths."""
    data: str = "shakespeare"
    """'shakespeare' (built-in, byte-level) or a directory with nanoGPT-style train.bin/val.bin."""
    lr: float = 2.0**-7
    """η_base: AdamW learning rate at the base shape."""
    init_std: float = 0.02
    """σ_base: init std of embedding, hidden and unembedding weights at the base shape."""
    weight_decay: float = 0.0
    """λ_base: AdamW weight decay (PyTorch style: decay = lr·λ·θ)."""
    eps: float = 1e-8
    """ε_base: AdamW epsilon."""
    beta1: float = 0.9
    """AdamW β1."""
    beta2: float = 0.95
    """AdamW β2."""
    warmup_steps: int = 50
    """Linear warmup steps of the shared LR schedule."""
    decay: str = "cosine"
    """Decay after warmup: 'cosine', 'linear' or 'constant'."""
    final_lr_ratio: float = 0.1
    """LR at the last step as a fraction of the peak."""
    grad_clip: float = 0.0
    """Global gradient-norm clip; 0 disables (Table 1 has none)."""
    steps: int = 600
    """Optimizer steps (the token budget is steps × batch_size × seq_len)."""
    batch_size: int = 16
    """Sequences per step."""
    seed: int = 0
    """Seeds init and batch order."""
    eval_interval: int = 100
    """Steps between validation evaluations (and the last step always)."""
    eval_batches: int = 8
    """Validation batches per evaluation (fixed, seed-independent)."""
    divergence_factor: float = 2.0
    """Stop as diverged when the train loss exceeds this × the first step's loss (or is not finite)."""

    def __post_init__(self) -> None:
        try:
            p = get_parameterization(self.parameterization)
        except ValueError as e:
            raise ConfigError("parameterization", str(e)) from None
        object.__setattr__(self, "parameterization", p.name)
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"{name} must be a positive integer (got {value!r})")
        for name in _POSITIVE_FLOATS:
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ConfigError(name, f"{name} must be a positive number (got {value!r}); e.g. {name} = {_EXAMPLES[name]}")
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ConfigError(name, f"{name} must be a number >= 0 (got {value!r})")
        for name in _NON_NEGATIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, f"{name} must be an integer >= 0 (got {value!r})")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value < 1):
                raise ConfigError(name, f"{name} must be in [0, 1) (got {value!r})")
        if self.decay not in DECAYS:
            raise ConfigError("decay", f"decay must be one of {', '.join(DECAYS)} (got {self.decay!r})")
        if self.width % self.head_dim:
            raise ConfigError("width", f"width {self.width} must be a multiple of head_dim {self.head_dim}")
        if self.divergence_factor <= 1:
            raise ConfigError("divergence_factor", f"divergence_factor must be > 1 (got {self.divergence_factor})")
        for name in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"{name} must be true or false (got {getattr(self, name)!r})")
        for name in ("data", "decay", "sweep", "model"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(name, f"{name} must be a string (got {getattr(self, name)!r})")

    @property
    def alpha(self) -> float | None:
        return get_parameterization(self.parameterization).alpha

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    @property
    def flops(self) -> float:
        """Training FLOPs of the whole token budget."""
        return self.tokens * flops_per_token(width=self.width, depth=self.depth, vocab_size=self.vocab_size,
                                             seq_len=self.seq_len, mlp_ratio=self.mlp_ratio)

    def result_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NON_RESULT_FIELDS}

    @functools.cached_property  # frozen: the inputs never change, so hash once
    def trial_id(self) -> str:
        payload = {**self.result_fields(), "rules_version": RULES_VERSION}
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, kw_only=True)
class CurvePoint:
    """One evaluation of the loss curve."""

    step: int
    tokens: int
    train_loss: float
    val_loss: float
    lr: float


@dataclass(frozen=True, kw_only=True)
class TrialResult:
    """The outcome of one trial: the config, and what was measured."""

    config: TrialConfig
    status: str
    """'ok', 'diverged' (stopped early, recorded as a row) or 'error' (an exception after retries)."""
    final_train_loss: float
    """Mean train loss over the last eval interval (NaN if the trial never ran a step)."""
    final_val_loss: float
    """Validation loss at the last step (NaN when diverged before it)."""
    diverged_at_step: int | None
    steps_done: int
    clip_fraction: float
    """Fraction of steps where gradient clipping fired (0 when clipping is off)."""
    flops: float
    """Training FLOPs estimate: tokens × (6 × matmul params + 12 × depth × seq_len × width)."""
    n_params: int
    wall_time_s: float
    device: str
    started_at: str
    code_version: str
    error: str = ""
    curve: tuple[CurvePoint, ...] = field(default=(), repr=False)

    @classmethod
    def failed(cls, config: TrialConfig, error: str, *, wall_time_s: float = 0.0, device: str = "", started_at: str = "") -> "TrialResult":
        """The row of a trial that raised (after retries): status 'error', losses NaN."""
        return cls(
            config=config, status="error", final_train_loss=math.nan, final_val_loss=math.nan,
            diverged_at_step=None, steps_done=0, clip_fraction=0.0, flops=0.0, n_params=0,
            wall_time_s=wall_time_s, device=device, started_at=started_at, code_version="", error=error[-2000:],
        )

    def row(self) -> dict[str, Any]:
        """The flat Parquet/MLflow record (curve excluded; it has its own file)."""
        c = self.config
        return {
            "trial_id": c.trial_id,
            **c.to_dict(),
            "alpha": c.alpha,
            "tokens": c.tokens,  # the budget; steps_done says how far a diverged trial got
            "status": self.status,
            "final_train_loss": self.final_train_loss,
            "final_val_loss": self.final_val_loss,
            "diverged_at_step": self.diverged_at_step,
            "steps_done": self.steps_done,
            "clip_fraction": self.clip_fraction,
            "flops": self.flops,
            "n_params": self.n_params,
            "wall_time_s": self.wall_time_s,
            "device": self.device,
            "started_at": self.started_at,
            "code_version": self.code_version,
            "error": self.error,
        }
