"""One trial's inputs (``TrialConfig``) and its one-row outcome (``TrialResult``): the trial schema.

Every ``TrialConfig`` field declares, where it is defined, its ``Role`` (what it means to a sweep) and
the check its value must pass. Everything else is derived from these declarations: which fields are
hashed into ``trial_id``, which a model preset or a sweep file's ``[train]`` table may set, which the
analysis treats as hyperparameters, which become MLflow params, the model config, and the row
columns (``ROW_COLUMNS``: config, derived, then measured), from which the store builds its Arrow
schema. Adding a field means adding it here, with a role; a test fails otherwise.

``trial_id`` is a content hash of every field that can change the result, plus the rules version,
so re-running a sweep recognises finished trials and extending a grid only runs new points.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .parameterization import RULES_VERSION, ScalingRules, get_parameterization, scaling_rules
from .roles import (  # noqa: F401 - the schema's vocabulary, re-exported where the schema is
    ABOVE_ONE,
    ADDED,
    CHECK,
    DECAYS,
    DECAYS_CHECK,
    EXAMPLES,
    HP_ROLES,
    NON_NEGATIVE,
    POSITIVE,
    PRESET_ROLES,
    ROLE,
    TRAIN_ROLES,
    UNIT,
    ConfigError,
    Role,
    base_type,
    check_roles,
    is_number,
    role,
)
from .shape import ModelConfig, ShapeError, check_heads


@dataclass(frozen=True, kw_only=True)
class TrialConfig:
    """Everything one training run needs. Flat, so it hashes, sweeps and logs as one record."""

    sweep: str = role(Role.LABEL, "adhoc")
    """Sweep name (the results folder and MLflow experiment); not part of trial_id."""
    model: str = role(Role.LABEL, "tiny")
    """Name of the model preset this trial came from; informational, the fields below are what count."""
    parameterization: str = role(Role.PARAMETERIZATION, "completep")
    """sp, mup, completep or alphaX (X in [0.5, 1])."""
    width: int = role(Role.SHAPE, 64, POSITIVE)
    """d_model N of this trial."""
    depth: int = role(Role.SHAPE, 2, POSITIVE)
    """Number of pre-LN blocks L."""
    base_width: int = role(Role.BASE_SHAPE, 32, POSITIVE)
    """N_base: width at which the base HPs are tuned (all multipliers are 1 there)."""
    base_depth: int = role(Role.BASE_SHAPE, 2, POSITIVE)
    """L_base: depth at which the base HPs are tuned."""
    head_dim: int = role(Role.MODEL, 16, POSITIVE)
    """Fixed across widths: heads = width / head_dim."""
    vocab_size: int = role(Role.MODEL, 256, POSITIVE)
    """Vocabulary size (256 for the built-in byte-level corpus)."""
    seq_len: int = role(Role.MODEL, 64, POSITIVE)
    """Tokens per sequence."""
    mlp_ratio: int = role(Role.MODEL, 4, POSITIVE)
    """MLP hidden size = mlp_ratio × width."""
    bias: bool = role(Role.MODEL, True)
    """Whether block linears have biases (hidden_bias group)."""
    tie_embeddings: bool = role(Role.MODEL, False)
    """Tie unembedding to the embedding (untied by default, as in the paper)."""
    attn_scale: float | None = role(Role.MODEL, None, POSITIVE)
    """Attention logit scale; None means 1/sqrt(head_dim), fixed across widths."""
    data: str = role(Role.MODEL, "shakespeare")
    """'shakespeare' (built-in, byte-level) or a directory with nanoGPT-style train.bin/val.bin."""
    data_fingerprint: str = role(Role.DERIVED, "", added="0.2.0")
    """Content hash of the token files ('' for the built-in corpus), set when a sweep is expanded."""
    lr: float = role(Role.HP, 2.0**-7, POSITIVE)
    """η_base: AdamW learning rate at the base shape."""
    init_std: float = role(Role.HP, 0.02, POSITIVE)
    """σ_base: init std of embedding, hidden and unembedding weights at the base shape."""
    weight_decay: float = role(Role.HP, 0.0, NON_NEGATIVE)
    """λ_base: AdamW weight decay (PyTorch style: decay = lr·λ·θ)."""
    eps: float = role(Role.HP, 1e-8, POSITIVE)
    """ε_base: AdamW epsilon."""
    beta1: float = role(Role.HP, 0.9, UNIT)
    """AdamW β1."""
    beta2: float = role(Role.HP, 0.95, UNIT)
    """AdamW β2."""
    warmup_steps: int = role(Role.TRAINING, 50, NON_NEGATIVE)
    """Linear warmup steps of the shared LR schedule."""
    decay: str = role(Role.TRAINING, "cosine", DECAYS_CHECK)
    """Decay after warmup: 'cosine', 'linear' or 'constant'."""
    final_lr_ratio: float = role(Role.TRAINING, 0.1, NON_NEGATIVE)
    """LR at the last step as a fraction of the peak."""
    grad_clip: float = role(Role.TRAINING, 0.0, NON_NEGATIVE)
    """Global gradient-norm clip; 0 disables (Table 1 has none)."""
    steps: int = role(Role.TRAINING, 600, POSITIVE)
    """Optimizer steps (the token budget is steps × batch_size × seq_len)."""
    batch_size: int = role(Role.TRAINING, 16, POSITIVE)
    """Sequences per step (the global batch: a trial on N workers gives each batch_size / N)."""
    micro_batch_size: int = role(Role.TRAINING, 0, NON_NEGATIVE, added="0.3.0")
    """Sequences per forward pass when a batch does not fit: each worker's share of the batch is
    split into micro-batches whose gradients add up to the batch's (0 or batch_size: no split)."""
    seed: int = role(Role.SEED, 0, NON_NEGATIVE)
    """Seeds init and batch order."""
    eval_interval: int = role(Role.MEASUREMENT, 100, POSITIVE)
    """Steps between validation evaluations (and the last step always)."""
    eval_batches: int = role(Role.MEASUREMENT, 8, POSITIVE)
    """Validation batches per evaluation (fixed, seed-independent)."""
    divergence_factor: float = role(Role.MEASUREMENT, 2.0, ABOVE_ONE)
    """Stop as diverged when the train loss exceeds this × the first step's loss (or is not finite)."""
    trainer: str = role(Role.TRAINER, "", added="0.2.0")
    """A user's training function, "pkg.module:func" (user_trainer.py); '' for the built-in one."""
    command: str = role(Role.TRAINER, "", added="0.2.0")
    """A user's training command template, its argument list as JSON text; '' when none."""
    trainer_version: str = role(Role.TRAINER, "", added="0.2.0")
    """The trainer function's version (user_trainer.trainer_version); a command's is its template."""

    def __post_init__(self) -> None:
        try:
            p = get_parameterization(self.parameterization)
        except ValueError as e:
            raise ConfigError("parameterization", str(e)) from None
        object.__setattr__(self, "parameterization", p.name)
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        try:
            check_heads(self.width, self.head_dim)
        except ShapeError as e:
            raise ConfigError(e.field, str(e)) from None
        if self.micro_batch_size and self.batch_size % self.micro_batch_size:
            raise ConfigError(
                "micro_batch_size",
                f"micro_batch_size {self.micro_batch_size} does not divide batch_size {self.batch_size}; "
                "use a divisor of batch_size, or 0 for no gradient accumulation",
            )

    def rules(self) -> ScalingRules:
        """This trial's ScalingRules: its parameterization at (width, depth) for its base shape."""
        return scaling_rules(
            self.parameterization,
            width=self.width,
            depth=self.depth,
            base_width=self.base_width,
            base_depth=self.base_depth,
        )

    @property
    def alpha(self) -> float | None:
        return get_parameterization(self.parameterization).alpha

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_size * self.seq_len

    def model_config(self) -> ModelConfig:
        """The architecture this trial builds: its fields of the same names."""
        return ModelConfig(**{name: getattr(self, name) for name in ModelConfig.field_names()})

    @property
    def flops(self) -> float:
        """Training FLOPs of the whole token budget."""
        return self.tokens * self.model_config().flops_per_token()

    @functools.cached_property  # frozen: the inputs never change, so hash once
    def trial_id(self) -> str:
        payload = {
            f.name: getattr(self, f.name)
            for f in HASHED_FIELDS
            if not (f.metadata[ADDED] and getattr(self, f.name) == f.default)
        }
        payload["rules_version"] = RULES_VERSION
        if not self.bias:  # since 0.2.0 LayerNorms follow `bias` (before, they always had biases)
            payload["norm_bias"] = False
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TrialConfig:
        """The config of a stored row. Parquet's null for None comes back as NaN; a field added
        after the row was written (absent or NaN) takes its default."""
        values = {}
        for f in fields(cls):
            v = row.get(f.name, f.default)
            if isinstance(v, float) and math.isnan(v) and (f.default is None or f.metadata[ADDED]):
                v = f.default
            values[f.name] = v.item() if hasattr(v, "item") else v  # numpy scalars -> Python
        return cls(**values)


def _check_field(f: dataclasses.Field, value: Any) -> None:
    hint = FIELD_TYPES[f.name]
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            kind = "true or false" if hint is bool else "a string"
            raise ConfigError(f.name, f"{f.name} must be {kind} (got {value!r})")
        if f.metadata[CHECK] and not f.metadata[CHECK][0](value):
            raise ConfigError(f.name, f"{f.name} must be {f.metadata[CHECK][1]} (got {value!r})")
        return
    if value is None and f.default is None:  # optional numbers (attn_scale): None means "derived"
        return
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f.name, f"{f.name} must be an integer (got {value!r})")
    test, what = f.metadata[CHECK] or (is_number, "a finite number")
    if not test(value):
        raise ConfigError(
            f.name, f"{f.name} must be {what} (got {value!r});{EXAMPLES.get(f.name, '')}".rstrip(";")
        )


check_roles(TrialConfig)
FIELD_TYPES: dict[str, type] = {name: base_type(h) for name, h in typing.get_type_hints(TrialConfig).items()}
# Fields a later release added, with the value an earlier release's rows implicitly had.
ADDED_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrialConfig) if f.metadata[ADDED]}


def fields_with(*roles: Role) -> tuple[str, ...]:
    """Names of the config fields with any of ``roles``, in declaration order."""
    return tuple(f.name for f in fields(TrialConfig) if f.metadata[ROLE] in roles)


HASHED_FIELDS = tuple(f for f in fields(TrialConfig) if f.metadata[ROLE] is not Role.LABEL)
SHAPE_AND_SEED = fields_with(Role.SHAPE, Role.SEED)  # ("width", "depth", "seed"): never an HP to tune


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
    """The outcome of one trial: the config, and what was measured (one row; the curve apart)."""

    config: TrialConfig
    status: str
    """'ok', 'diverged' (stopped early, recorded as a row) or 'error' (an exception after retries)."""
    final_train_loss: float
    """Mean train loss over the last eval interval (NaN if the trial never ran a step)."""
    final_val_loss: float
    """Validation loss at the last step (NaN when diverged before it)."""
    diverged_at_step: int | None
    """The step at which the loss blew up (None when it did not)."""
    steps_done: int
    """Optimizer steps taken (the budget's steps unless diverged)."""
    clip_fraction: float
    """Fraction of steps where gradient clipping fired (0 when clipping is off)."""
    flops: float
    """Training FLOPs of the steps done (ModelConfig.flops_per_token × tokens seen)."""
    n_params: int
    """Parameters of the model, shared tensors counted once."""
    wall_time_s: float
    """Seconds from start to result, data loading and evaluation included."""
    device: str
    """Where it ran, e.g. cpu or cuda:0."""
    worker: str = ""
    """Ray node id of the worker (set by the driver when it records the row)."""
    started_at: str
    """UTC start time, ISO 8601."""
    code_version: str
    """Package version, rules version and git commit of the code that computed it."""
    error: str = ""
    """The error text of a trial that raised after its retries (status 'error')."""
    curve: tuple[CurvePoint, ...] = field(default=(), repr=False)

    @classmethod
    def failed(
        cls,
        config: TrialConfig,
        error: str,
        *,
        wall_time_s: float = 0.0,
        device: str = "",
        started_at: str = "",
    ) -> TrialResult:
        """The row of a trial that raised (after retries): status 'error', losses NaN."""
        return cls(
            config=config,
            status="error",
            final_train_loss=math.nan,
            final_val_loss=math.nan,
            diverged_at_step=None,
            steps_done=0,
            clip_fraction=0.0,
            flops=0.0,
            n_params=0,
            wall_time_s=wall_time_s,
            device=device,
            started_at=started_at,
            code_version="",
            error=error[-2000:],
        )

    def row(self) -> dict[str, Any]:
        """The flat Parquet/MLflow record: config, derived, then measured columns (see ROW_COLUMNS)."""
        c = self.config
        derived = {"alpha": c.alpha, "tokens": c.tokens}  # tokens: the budget; steps_done says how far
        measured = {name: getattr(self, name) for name in MEASURED_COLUMNS}
        return {"trial_id": c.trial_id, **c.to_dict(), **derived, **measured}


# The row, declared once: the store's Arrow schema, the analysis and MLflow read these.
MEASURED_COLUMNS = tuple(f.name for f in fields(TrialResult) if f.name not in ("config", "curve"))
_RESULT_TYPES = {name: base_type(h) for name, h in typing.get_type_hints(TrialResult).items()}
ROW_COLUMNS: dict[str, type] = {
    "trial_id": str,
    **FIELD_TYPES,
    "alpha": float,  # None for SP and µP (no depth exponent)
    "tokens": int,
    **{name: _RESULT_TYPES[name] for name in MEASURED_COLUMNS},
}
CURVE_COLUMNS: dict[str, type] = {"trial_id": str, **typing.get_type_hints(CurvePoint)}
