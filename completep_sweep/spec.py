"""Model presets (models/*.toml) and, built on them, sweep files."""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .data import DataError, check_source, resolve_data
from .parameterization import get_parameterization
from .trial import ConfigError, TrialConfig

PRESET_DIRS = (Path.cwd() / "models", Path(__file__).resolve().parents[1] / "models")
# Keys a preset sets; they are TrialConfig fields (a sweep may override or sweep any of them).
_CONFIG_FIELDS = frozenset(TrialConfig.field_names()) - {"sweep", "model", "parameterization", "width", "depth"}
# A preset's top-level keys (the architecture and data); everything else is a training setting.
MODEL_FIELDS = frozenset({"base_width", "base_depth", "head_dim", "vocab_size", "seq_len", "mlp_ratio", "bias",
                          "tie_embeddings", "attn_scale", "data"})
TRAIN_FIELDS = _CONFIG_FIELDS - MODEL_FIELDS


class SpecError(ValueError):
    """Bad sweep file or preset; the message names the field and the fix."""


def find_preset(name: str) -> Path:
    """A preset by name (models/NAME.toml in the working dir or the repo) or by path."""
    candidates = [Path(name)] if name.endswith(".toml") else [d / f"{name}.toml" for d in PRESET_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted({p.stem for d in PRESET_DIRS if d.is_dir() for p in d.glob("*.toml")})
    raise SpecError(f"model: no preset {name!r}; use one of {', '.join(known) or '(none found)'} or a path to a .toml file")


def load_preset(name: str) -> dict[str, Any]:
    """The preset's TrialConfig defaults, flat (model keys and its [train] table merged)."""
    path = find_preset(name)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"model preset {path}: not valid TOML ({e})") from None
    raw.pop("description", None)
    train = raw.pop("train", {})
    if not isinstance(train, dict):
        raise SpecError(f"model preset {path}: [train] must be a table")
    values = {**raw, **train}
    unknown = sorted(set(values) - _CONFIG_FIELDS)
    if unknown:
        raise SpecError(f"model preset {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(_CONFIG_FIELDS))}")
    return {"model": path.stem, **values}


def preset_config(name: str, **overrides: Any) -> TrialConfig:
    """A TrialConfig from a preset plus explicit overrides (None values are ignored)."""
    values = {**load_preset(name), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TrialConfig(**values)
    except (TypeError, ValueError) as e:
        raise SpecError(str(e)) from None


# ---------------------------------------------------------------- sweep files
SWEEPABLE = tuple(sorted(_CONFIG_FIELDS | {"width", "depth"}))
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use letters, digits, '.', '_' and '-' only (it names results/<name>/)")
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
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]


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


_FLOAT_FIELDS = frozenset(
    name for name, hint in typing.get_type_hints(TrialConfig).items() if float in (hint, *typing.get_args(hint))
)


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


def parse_sweep(text: str, source: str = "<sweep>") -> Sweep:
    """Validate a sweep file's text and expand it; raises SpecError naming the field and the fix."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML ({e}); fix the syntax at that line") from None
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        raise SpecError(f"{source}: {_loc(first) or 'file'}: {first['msg']}") from None
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
    trials = tuple(_expand(template, spec.parameterizations, axes))
    for data, vocab_size in sorted({(t.data, t.vocab_size) for t in trials}):
        try:
            check_source(data, vocab_size)
        except DataError as e:
            raise SpecError(f"{source}: {_where('data', spec)}: {e}") from None
    return Sweep(spec, text, trials)


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
