"""Model presets (``models/*.toml``): the base shape, architecture, data and training defaults.

A preset's top-level keys are the fields with a preset role (architecture, data, base shape); its
``[train]`` table holds the training fields. Both sets follow from the roles declared in trial.py.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from .errors import SpecError
from .trial import PRESET_ROLES, TRAIN_ROLES, TrialConfig, fields_with

PRESET_DIRS = (Path.cwd() / "models", Path(__file__).resolve().parents[1] / "models")
MODEL_FIELDS = frozenset(fields_with(*PRESET_ROLES))
TRAIN_FIELDS = frozenset(fields_with(*TRAIN_ROLES))
# What a preset must say (the architecture, data and base shape); optional ones default to None.
REQUIRED_FIELDS = frozenset(
    f.name for f in fields(TrialConfig) if f.name in MODEL_FIELDS and f.default is not None
)


def find_preset(name: str) -> Path:
    """A preset by name (models/NAME.toml in the working dir or the repo) or by path."""
    candidates = [Path(name)] if name.endswith(".toml") else [d / f"{name}.toml" for d in PRESET_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted({p.stem for d in PRESET_DIRS if d.is_dir() for p in d.glob("*.toml")})
    raise SpecError(
        f"model: no preset {name!r}; use one of {', '.join(known) or '(none found)'} "
        "or a path to a .toml file"
    )


def _unknown(path: Path, where: str, keys: set[str], allowed: frozenset[str]) -> None:
    unknown = sorted(keys - allowed)
    if unknown:
        raise SpecError(
            f"model preset {path}: {where}: unknown key(s) {', '.join(unknown)}; "
            f"allowed there: {', '.join(sorted(allowed))}"
        )


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
    _unknown(path, "top level", set(raw), MODEL_FIELDS)
    _unknown(path, "[train]", set(train), TRAIN_FIELDS)
    missing = sorted(REQUIRED_FIELDS - set(raw))
    if missing:
        raise SpecError(
            f"model preset {path}: missing {', '.join(missing)}; a preset fixes the architecture, "
            "data and base shape (see models/tiny.toml)"
        )
    return {"model": path.stem, **raw, **train}


def preset_config(name: str, **overrides: Any) -> TrialConfig:
    """A TrialConfig from a preset plus explicit overrides (None values are ignored)."""
    values = {**load_preset(name), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TrialConfig(**values)
    except (TypeError, ValueError) as e:
        raise SpecError(str(e)) from None


def config_warnings(config: TrialConfig) -> list[str]:
    """Settings that are legal but silently defeat each other.

    Printed by trial/validate/run, never refused.
    """
    out = []
    if config.warmup_steps >= config.steps:
        out.append(
            f"warmup_steps {config.warmup_steps} >= steps {config.steps}: the LR never leaves warmup "
            f"and never decays; set warmup_steps below steps (e.g. {config.steps // 10})"
        )
    if config.eval_interval > config.steps:
        out.append(
            f"eval_interval {config.eval_interval} > steps {config.steps}: the loss curve has only "
            "the final eval; set eval_interval to at most steps"
        )
    return out
