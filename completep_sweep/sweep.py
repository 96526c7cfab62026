"""Sweep files: a study in TOML, validated and expanded into trials (on top of a model preset)."""

from __future__ import annotations

import hashlib
import itertools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .data import DataError, check_source, fingerprint, resolve_data
from .errors import SpecError
from .presets import MODEL_FIELDS, TRAIN_FIELDS, load_preset
from .search_table import check_deepening, check_search
from .sweepfile import Around, Log2Range, SweepSpec
from .trial import FIELD_TYPES, ConfigError, Role, TrialConfig, fields_with
from .unknown_keys import first_error
from .user_trainer import trainer_fields

_CONFIG_FIELDS = MODEL_FIELDS | TRAIN_FIELDS
MAX_GRID_TRIALS = 100_000
"""Most trials one sweep file's grid may expand to (parameterizations x every axis). Counted from the
axis lengths before any trial is built: every trial is built and hashed on each read of the file
(about 30 µs and 2 KB each: 3 s and 200 MB at the cap), and a grid past it is mostly far from any
optimum; a bracket search or several files cover a larger space."""


# ---------------------------------------------------------------- sweep files
SWEEPABLE = tuple(sorted(_CONFIG_FIELDS | set(fields_with(Role.SHAPE))))


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the spec, its source text, its axes and the trials of its grid.

    For ``[search] method = "bracket"`` the grid's trials are where the search starts; for
    "optuna" the grid only defines the space (``trials`` is empty). search.make_plan says which
    trials the sweep consists of once results exist.
    """

    spec: SweepSpec
    text: str
    trials: tuple[TrialConfig, ...]
    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Grid axis -> its values (log2_range and around resolved)."""
    template: TrialConfig | None = None
    """The first grid point: every fixed setting, resolved (data fingerprint included)."""
    resolved: dict[str, dict] = field(default_factory=dict)
    """What expanding the file looked up outside it: ``around`` -> {"sweep:hp": the other sweep's best
    value}, ``data`` -> {source: content hash}, ``trainer`` -> a user trainer's version and import
    paths (user_trainer.py). ``run`` records it with the run, and readers of the
    results folder expand the recorded file with it (``parse_sweep(recorded=...)``), so extending
    another sweep or touching a token file later never turns this sweep's finished rows stale."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ids(self) -> set[str]:
        return {t.trial_id for t in self.trials}

    def pending(self, done: set[str]) -> list[TrialConfig]:
        """Grid trials without a row, each once (a grid may name the same point twice)."""
        return list({t.trial_id: t for t in self.trials if t.trial_id not in done}.values())

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.text)


def spec_hash(text: str) -> str:
    """Short hash of a sweep file's text: names a version of the sweep (MLflow tag, job id)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _loc(error: dict) -> str:
    return ".".join(str(p) for p in error["loc"] if not str(p).startswith(("list[", "Log2Range", "function")))


def _msg(error: dict) -> str:
    """Pydantic's message without its "Value error, " prefix (the message is ours)."""
    return error["msg"].removeprefix("Value error, ")


def _check_keys(table: dict, where: str, allowed: frozenset[str] | tuple[str, ...]) -> None:
    homes = {"train": TRAIN_FIELDS, "model_overrides": MODEL_FIELDS}
    for key in table:
        if key in allowed:
            continue
        home = next((h for h, keys in homes.items() if key in keys and h != where), None)
        if home:
            raise SpecError(f"{where}.{key}: belongs in [{home}]; move it there")
        raise SpecError(f"{where}.{key}: unknown field; allowed: {', '.join(sorted(allowed))}")


Resolver = Callable[[str, str], float]
"""(sweep name, HP) -> that sweep's best value of the HP; raises SpecError when it has none."""


def _axis_values(key: str, axis: Any, resolve: Resolver) -> list[Any]:
    if isinstance(axis, dict):
        kind, hint = (
            (Around, '{ around = "sweep", octaves = 2, step = 0.5 }')
            if "around" in axis
            else (Log2Range, "{ log2_range = [low, high], step = 1 }")
        )
        try:
            model = kind.model_validate(axis)
            values = model.values(_best(resolve, model.around, key)) if kind is Around else model.values()
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(["grid", key, *map(str, first["loc"])])
            raise SpecError(f"{where}: {_msg(first)}; write {hint}") from None
        except SpecError:
            raise
        except (ValueError, ArithmeticError) as e:  # ArithmeticError: an overflow no check foresaw
            raise SpecError(f"grid.{key}: {e}") from None
    elif isinstance(axis, list):
        values = axis
    else:
        raise SpecError(
            f"grid.{key}: expected a list of values, {{ log2_range = [low, high] }} or "
            f'{{ around = "sweep" }} (got {axis!r})'
        )
    if not values:
        raise SpecError(f"grid.{key}: empty list; give at least one value or remove the key")
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"grid.{key}: duplicate values {values}")
    return [_coerce(key, v) for v in values]


def _best(resolve: Resolver, sweep: str, key: str) -> float:
    try:
        return resolve(sweep, key)
    except SpecError as e:
        raise SpecError(f"grid.{key}.around: {e}") from None


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
        first, typo = first_error(e.errors(), SweepSpec)
        raise SpecError(f"{source}: {_loc(first) or 'file'}: {typo or _msg(first)}") from None


def parse_sweep(
    text: str,
    source: str = "<sweep>",
    *,
    resolve: Resolver | None = None,
    recorded: dict[str, dict] | None = None,
) -> Sweep:
    """Validate a sweep file's text and expand it; raises SpecError naming the field and the fix.

    ``resolve`` looks up another sweep's best value for ``{ around = "sweep" }`` axes. ``recorded``
    is a ``Sweep.resolved`` kept by the run that used this text: its values are used as they were
    (the centres that run used; the data it hashed, not re-checked), ``resolve`` only for the rest.
    """
    recorded = recorded or {}
    spec = read_spec(text, source)
    around: dict[str, float] = {}

    def lookup(name: str, hp: str) -> float:
        key = f"{name}:{hp}"
        if key in recorded.get("around", {}):
            around[key] = float(recorded["around"][key])
        else:
            if resolve is None:
                raise SpecError(f"{name!r} cannot be looked up here (no results folder given)")
            around[key] = float(resolve(name, hp))
        return around[key]

    _check_keys(spec.grid, "grid", SWEEPABLE)
    _check_keys(spec.train, "train", TRAIN_FIELDS)
    _check_keys(spec.model_overrides, "model_overrides", MODEL_FIELDS)
    for key in spec.grid:
        if key in spec.train or key in spec.model_overrides:
            raise SpecError(
                f"grid.{key}: also set as a fixed value in [train] or [model_overrides]; keep it in one place"
            )
    # A user's trainer is loaded and checked before any compute; its name and version are hashed.
    trainer, trainer_resolved = trainer_fields(spec, source, recorded.get("trainer"))
    fixed = {
        **trainer,
        **load_preset(spec.model),
        **spec.model_overrides,
        **spec.train,
        "sweep": spec.name,
        "parameterization": spec.parameterizations[0],
    }
    fixed = {k: _coerce(k, v) for k, v in fixed.items()}
    axes = {key: _axis_values(key, axis, lookup) for key, axis in spec.grid.items()}
    _check_count(spec, axes, source)  # before any trial is built
    # Relative token-file paths mean "from where the sweep is run", wherever the trials execute.
    if isinstance(fixed.get("data"), str):
        fixed["data"] = resolve_data(fixed["data"])
    if "data" in axes:
        axes["data"] = [resolve_data(v) if isinstance(v, str) else v for v in axes["data"]]
    first = {key: values[0] for key, values in axes.items()}
    for key, values in axes.items():  # each value on its own, so the message names the axis and the value
        for v in values:
            _config({**fixed, **first, key: v}, spec, source)
    prints = _check_data(
        fixed, axes, spec, source, recorded.get("data", {})
    )  # content hashes: part of the ids
    template = _config(
        {**fixed, **first, "data_fingerprint": prints[first.get("data", fixed["data"])]}, spec, source
    )
    check_search(spec, axes, source)
    trials = (
        ()
        if spec.search.method == "optuna"
        else tuple(_expand(template, spec.parameterizations, axes, prints))
    )
    check_deepening(spec.search, trials, source)
    return Sweep(
        spec,
        text,
        trials,
        {k: tuple(v) for k, v in axes.items()},
        template,
        {"around": around, "data": prints, **trainer_resolved},
    )


def _check_data(
    fixed: dict, axes: dict, spec: SweepSpec, source: str, known: dict[str, str]
) -> dict[str, str]:
    """Every (data, vocab_size, seq_len) the grid can combine is checked now, before any compute;
    returns each data source's content hash ('' for the built-in corpus). Sources in ``known`` (a
    recorded run's hashes) are taken as recorded: the rows were computed on that content."""
    values = {k: axes.get(k, [fixed[k]]) for k in ("data", "vocab_size", "seq_len")}
    if set(values["data"]) <= set(known):
        return {d: known[d] for d in values["data"]}
    prints = {}
    for data, vocab_size, seq_len in itertools.product(*values.values()):
        try:
            check_source(data, vocab_size, seq_len)
            prints[data] = prints.get(data) or fingerprint(data)
        except DataError as e:
            raise SpecError(f"{source}: {_where(e.field, spec)}: {e}") from None
    return prints


def _check_count(spec: SweepSpec, axes: dict[str, list[Any]], source: str) -> None:
    """Trials = parameterizations x every axis (as _expand builds them; optuna builds none)."""
    sizes = {"parameterizations": len(spec.parameterizations), **{k: len(v) for k, v in axes.items()}}
    count = math.prod(sizes.values())
    if spec.search.method != "optuna" and count > MAX_GRID_TRIALS:
        raise SpecError(
            f"{source}: grid: {' x '.join(f'{k} {n}' for k, n in sizes.items())} = {count:,} trials, above "
            f"the cap of {MAX_GRID_TRIALS:,}; shorten an axis or split the sweep into several files"
        )


def _expand(template: TrialConfig, parameterizations: list[str], axes: dict[str, list[Any]], prints: dict):
    keys = list(axes)
    for p in parameterizations:
        for combo in itertools.product(*(axes[k] for k in keys)):
            values = dict(zip(keys, combo))
            if "data" in values:
                values["data_fingerprint"] = prints[values["data"]]
            try:
                yield template.replace(parameterization=p, **values)
            except ConfigError as e:  # a combination no single value shows (e.g. width vs head_dim)
                raise SpecError(f"grid: the combination {dict(zip(keys, combo))} is invalid: {e}") from None


def load_sweep(path: str | Path, *, resolve: Resolver | None = None) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise SpecError(
            f"sweep file {path} does not exist; pass a path such as sweeps/depth-transfer-demo.toml"
        )
    return parse_sweep(path.read_text(), source=str(path), resolve=resolve)
