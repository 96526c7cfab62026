"""Sweep files: a study in TOML, validated and expanded into trials (on top of a model preset)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .data import DataError, check_source, fingerprint, resolve_data
from .parameterization import get_parameterization
from .presets import MODEL_FIELDS, TRAIN_FIELDS, SpecError, load_preset
from .trial import FIELD_TYPES, ConfigError, Role, TrialConfig, fields_with

_CONFIG_FIELDS = MODEL_FIELDS | TRAIN_FIELDS


# ---------------------------------------------------------------- sweep files
SWEEPABLE = tuple(sorted(_CONFIG_FIELDS | set(fields_with(Role.SHAPE))))
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
RESERVED_NAMES = frozenset({"mlflow.db", "mlartifacts"})  # beside the sweeps in results/


class Log2Range(BaseModel):
    """Powers of two 2^lo … 2^hi inclusive, every ``step`` octaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    log2_range: tuple[float, float]
    step: float = Field(default=1.0, gt=0)

    def values(self) -> list[float]:
        lo, hi = self.log2_range
        if hi < lo:
            raise ValueError(f"log2_range [{lo:g}, {hi:g}] must be [low, high] with low <= high")
        n = int(math.floor((hi - lo) / self.step + 1e-9)) + 1
        if n > 10_000:
            raise ValueError(f"log2_range with step {self.step:g} gives {n} values; use a larger step")
        return [2.0 ** (lo + i * self.step) for i in range(n)]


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus_per_trial: float = Field(default=1, gt=0, description="CPUs per trial (torch threads on CPU)")
    gpus_per_trial: float = Field(default=0, ge=0, description="GPUs per trial; fractional shares a GPU")
    max_concurrent: int | None = Field(default=None, ge=1, description="at most this many trials at once")
    max_retries: int = Field(default=2, ge=0, description="re-runs of a trial whose worker died or raised")
    autoscale_wait_s: float = Field(default=0, ge=0, description="on an autoscaling cluster: seconds to wait for "
                                    "a node that fits a trial before giving up (0: refuse at once)")


class SweepSpec(BaseModel):
    """A sweep file. Unknown keys are refused, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    model: str = "tiny"
    description: str = ""
    parameterizations: list[str] = Field(min_length=1)
    grid: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)

    def settings(self) -> dict[str, str]:
        """What the file sets, flat: grid.lr, train.steps, model, parameterizations (as text)."""
        out = {}
        for key, value in self.model_dump(exclude_unset=True, exclude={"name", "description"}).items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in value.items()})
            else:
                out[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use letters, digits, '.', '_' and '-' only (it names results/<name>/)")
        if v in RESERVED_NAMES:
            raise ValueError(f"{v!r} is the local MLflow store's name in results/; pick another name")
        return v

    @field_validator("parameterizations")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        names = [get_parameterization(p).name for p in v]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate entries in {v}")
        return names


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the spec, its source text, and every trial it expands to."""

    spec: SweepSpec
    text: str
    trials: tuple[TrialConfig, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ids(self) -> set[str]:
        return {t.trial_id for t in self.trials}

    def pending(self, done: set[str]) -> list[TrialConfig]:
        """Trials without a row, each once (a grid may name the same point twice)."""
        return list({t.trial_id: t for t in self.trials if t.trial_id not in done}.values())

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.text)


def spec_hash(text: str) -> str:
    """Short hash of a sweep file's text: names a version of the sweep (MLflow tag, job id)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _loc(error: dict) -> str:
    return ".".join(str(p) for p in error["loc"] if not str(p).startswith(("list[", "Log2Range", "function")))


def _check_keys(table: dict, where: str, allowed: frozenset[str] | tuple[str, ...]) -> None:
    homes = {"train": TRAIN_FIELDS, "model_overrides": MODEL_FIELDS}
    for key in table:
        if key in allowed:
            continue
        home = next((h for h, keys in homes.items() if key in keys and h != where), None)
        if home:
            raise SpecError(f"{where}.{key}: belongs in [{home}]; move it there")
        raise SpecError(f"{where}.{key}: unknown field; allowed: {', '.join(sorted(allowed))}")


def _axis_values(key: str, axis: Any) -> list[Any]:
    if isinstance(axis, dict):
        try:
            values = Log2Range.model_validate(axis).values()
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SpecError(f"grid.{key}.{where}: {first['msg']}; write {{ log2_range = [low, high], step = 1 }}") from None
        except ValueError as e:
            raise SpecError(f"grid.{key}: {e}") from None
    elif isinstance(axis, list):
        values = axis
    else:
        raise SpecError(f"grid.{key}: expected a list of values or {{ log2_range = [low, high] }} (got {axis!r})")
    if not values:
        raise SpecError(f"grid.{key}: empty list; give at least one value or remove the key")
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"grid.{key}: duplicate values {values}")
    return [_coerce(key, v) for v in values]


_FLOAT_FIELDS = frozenset(name for name, kind in FIELD_TYPES.items() if kind is float)


def _coerce(key: str, value: Any) -> Any:
    """An integer where the field is a float is meant as that float (lr = 1 means 1.0)."""
    if key in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _where(field: str, spec: SweepSpec) -> str:
    for table in ("grid", "train", "model_overrides"):
        if field in getattr(spec, table):
            return f"{table}.{field}"
    return f"model preset {spec.model!r}: {field}"


def _config(values: dict[str, Any], spec: SweepSpec, source: str) -> TrialConfig:
    try:
        return TrialConfig(**values)
    except ConfigError as e:
        raise SpecError(f"{source}: {_where(e.field, spec)}: {e}") from None
    except TypeError as e:
        raise SpecError(f"{source}: {e}") from None


def read_spec(text: str, source: str = "<sweep>") -> SweepSpec:
    """A sweep file's settings, validated but not expanded (no preset or data needed)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML ({e}); fix the syntax at that line") from None
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise SpecError(f"{source}: {_loc(first) or 'file'}: {first['msg']}") from None


def parse_sweep(text: str, source: str = "<sweep>") -> Sweep:
    """Validate a sweep file's text and expand it; raises SpecError naming the field and the fix."""
    spec = read_spec(text, source)
    _check_keys(spec.grid, "grid", SWEEPABLE)
    _check_keys(spec.train, "train", TRAIN_FIELDS)
    _check_keys(spec.model_overrides, "model_overrides", MODEL_FIELDS)
    for key in spec.grid:
        if key in spec.train or key in spec.model_overrides:
            raise SpecError(f"grid.{key}: also set as a fixed value in [train] or [model_overrides]; keep it in one place")
    fixed = {**load_preset(spec.model), **spec.model_overrides, **spec.train, "sweep": spec.name,
             "parameterization": spec.parameterizations[0]}
    fixed = {k: _coerce(k, v) for k, v in fixed.items()}
    axes = {key: _axis_values(key, axis) for key, axis in spec.grid.items()}
    # Relative token-file paths mean "from where the sweep is run", wherever the trials execute.
    if isinstance(fixed.get("data"), str):
        fixed["data"] = resolve_data(fixed["data"])
    if "data" in axes:
        axes["data"] = [resolve_data(v) if isinstance(v, str) else v for v in axes["data"]]
    first = {key: values[0] for key, values in axes.items()}
    for key, values in axes.items():  # each value on its own, so the message names the axis and the value
        for v in values:
            _config({**fixed, **first, key: v}, spec, source)
    template = _config({**fixed, **first}, spec, source)
    trials = _check_data(tuple(_expand(template, spec.parameterizations, axes)), spec, source)
    return Sweep(spec, text, trials)


def _check_data(trials: tuple[TrialConfig, ...], spec: SweepSpec, source: str) -> tuple[TrialConfig, ...]:
    """Every (data, vocab_size, seq_len) the trials use is checked now, before any compute; token
    files add their content hash to each trial's id (changed data means new trials)."""
    fingerprints = {}
    for data, vocab_size, seq_len in sorted({(t.data, t.vocab_size, t.seq_len) for t in trials}):
        try:
            check_source(data, vocab_size, seq_len)
            fingerprints[data] = fingerprint(data)
        except DataError as e:
            raise SpecError(f"{source}: {_where(e.field, spec)}: {e}") from None
    if any(fingerprints.values()):
        trials = tuple(t.replace(data_fingerprint=fingerprints[t.data]) for t in trials)
    return trials


def _expand(template: TrialConfig, parameterizations: list[str], axes: dict[str, list[Any]]):
    keys = list(axes)
    for p in parameterizations:
        for combo in itertools.product(*(axes[k] for k in keys)):
            try:
                yield template.replace(parameterization=p, **dict(zip(keys, combo)))
            except ConfigError as e:  # a combination no single value shows (e.g. width vs head_dim)
                raise SpecError(f"grid: the combination {dict(zip(keys, combo))} is invalid: {e}") from None


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep file {path} does not exist; pass a path such as sweeps/depth-transfer-demo.toml")
    return parse_sweep(path.read_text(), source=str(path))
