"""The vocabulary of the trial schema: what a config field means (``Role``), how one is declared
(``role()``), and the checks its value must pass. trial.py declares the fields with it."""

from __future__ import annotations

import enum
import math
import typing
from collections.abc import Callable
from dataclasses import field, fields
from typing import Any

from .errors import FieldError

DECAYS = ("cosine", "linear", "constant")


class Role(enum.Enum):
    """What a config field means to a sweep; where it may be set follows from it."""

    LABEL = "label"
    """Names or places the trial (sweep, preset name); cannot change its numbers, not hashed."""
    PARAMETERIZATION = "parameterization"
    """Which rules of Table 1 apply."""
    SHAPE = "shape"
    """Width and depth of this trial: the axes along which transfer is judged."""
    BASE_SHAPE = "base_shape"
    """The shape at which base HPs are tuned (multipliers are 1 there); a preset setting."""
    MODEL = "model"
    """Architecture and data, fixed by the model preset (``[model_overrides]`` in a sweep file)."""
    HP = "hp"
    """Optimizer hyperparameters (``[train]``); the ones a transfer study sweeps."""
    TRAINING = "training"
    """Budget and schedule (``[train]``); an HP too when a sweep varies it."""
    SEED = "seed"
    """Seeds init and batch order; the analysis averages over it."""
    MEASUREMENT = "measurement"
    """How the outcome is measured (``[train]``); never an HP."""
    DERIVED = "derived"
    """Computed by the tool from other fields (the data's content hash); never set by hand."""
    TRAINER = "trainer"
    """Which code trains the trial: a user's entry point or command (the sweep file's top-level
    ``trainer`` / ``command``) and its version; hashed, never an HP, '' for the built-in trainer."""


ROLE, CHECK, ADDED = "role", "check", "added"
PRESET_ROLES = frozenset({Role.BASE_SHAPE, Role.MODEL})  # a preset's top-level keys, [model_overrides]
TRAIN_ROLES = frozenset({Role.HP, Role.TRAINING, Role.SEED, Role.MEASUREMENT})  # a preset's [train]
HP_ROLES = frozenset({Role.HP, Role.TRAINING})  # swept values the analysis finds optima for


class ConfigError(FieldError):
    """A bad TrialConfig value; ``field`` names it so callers can say where it was set."""


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Checks: (test, what the value must be). Integers must be ints; the type hint says which.
POSITIVE = (lambda v: is_number(v) and v > 0, "a positive number")
NON_NEGATIVE = (lambda v: is_number(v) and v >= 0, "a number >= 0")
UNIT = (lambda v: is_number(v) and 0 <= v < 1, "in [0, 1)")
ABOVE_ONE = (lambda v: is_number(v) and v > 1, "a number > 1")
DECAYS_CHECK = (lambda v: v in DECAYS, "one of " + ", ".join(DECAYS))
EXAMPLES = {
    "lr": " e.g. lr = 0.0078125 (2^-7)",
    "init_std": " e.g. init_std = 0.02",
    "eps": " e.g. eps = 1e-8",
}


def role(
    kind: Role,
    default: Any,
    check: tuple[Callable[[Any], bool], str] | None = None,
    *,
    added: str | None = None,
):
    """A config field: its default, its role and the check its value must pass.

    ``added``: the release that introduced the field. Such a field is hashed into ``trial_id`` only
    when it differs from its default, so every id (and row) of an earlier release stays valid.
    """
    return field(default=default, metadata={ROLE: kind, CHECK: check, ADDED: added})


def base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def check_roles(cls: type) -> None:
    """Every field of a config dataclass declares a Role (via ``role()``); raises TypeError naming one
    that does not, so adding a field without deciding what it means fails at import."""
    for f in fields(cls):
        if not isinstance(f.metadata.get(ROLE), Role):
            raise TypeError(
                f"{cls.__name__}.{f.name} has no role: declare it as "
                f"`{f.name}: type = role(Role.<KIND>, default, check)` (see trial.Role)"
            )
