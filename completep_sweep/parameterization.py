"""The four parameterizations of Dey et al. 2025 (Table 1) as data.

Every rule is a factor m_N^a · m_L^b multiplying a base value, where m_N = width / base_width and
m_L = depth / base_depth. The exponents live in one table, ``RULES``; a parameterization only says
whether width scaling is on (a is used or zeroed) and which depth exponent α it uses (b = c0 + c1·α,
or 0 when the parameterization has no depth scaling). Nothing else in the project branches on the
parameterization's name: the model, optimizer and loop consume ``ScalingRules``.

This module imports no torch so that rules can be inspected, hashed and tested in microseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Bumped whenever a rule changes numerically: it is part of every trial_id, so results produced
# under older rules are never silently mixed with new ones.
RULES_VERSION = "table1-v1"

GROUPS = ("embedding", "block_norm", "hidden_weight", "hidden_bias", "final_norm", "unembedding")
# Project choice (docs/parameterizations.md): norms and biases never decay; they have no init std
# (gains start at 1, biases at 0).
DECAYED_GROUPS = ("embedding", "hidden_weight", "unembedding")
INITIALIZED_GROUPS = ("embedding", "hidden_weight", "unembedding")

# The base HPs the rules multiply (σ_base, η_base, λ_base, ε_base), by their config names.
BASE_HPS = ("lr", "init_std", "weight_decay", "eps")

ALPHA_MIN, ALPHA_MAX = 0.5, 1.0


@dataclass(frozen=True)
class Exponent:
    """Factor m_N^(width) · m_L^(depth_const + depth_alpha·α).

    ``width`` applies only when the parameterization scales with width; the depth part only when it
    has a depth exponent α.
    """

    width: float = 0.0
    depth_const: float = 0.0
    depth_alpha: float = 0.0

    def factor(self, p: Parameterization, width_mult: float, depth_mult: float) -> float:
        a = self.width if p.width_scaling else 0.0
        b = self.depth_const + self.depth_alpha * p.alpha if p.alpha is not None else 0.0
        # m**0 is exactly 1.0, so at the base shape every factor is exactly 1 (bit-identical models).
        return width_mult**a * depth_mult**b


ONE = Exponent()
DEPTH_LR = Exponent(depth_const=-1.0, depth_alpha=1.0)  # m_L^(α−1)

# (quantity, group) -> exponent. Quantities: init_var, lr, weight_decay, eps.
# Missing entries are a factor of 1. Read this next to Table 1 / docs/parameterizations.md.
RULES: Mapping[tuple[str, str], Exponent] = MappingProxyType(
    {
        ("init_var", "hidden_weight"): Exponent(width=-1.0),  # variance m_N^-1 (std m_N^-1/2)
        ("lr", "block_norm"): DEPTH_LR,
        ("lr", "hidden_weight"): Exponent(width=-1.0, depth_const=-1.0, depth_alpha=1.0),
        ("lr", "hidden_bias"): DEPTH_LR,
        ("weight_decay", "hidden_weight"): Exponent(width=1.0),
        ("eps", "block_norm"): Exponent(width=-1.0, depth_alpha=-1.0),  # m_N^-1 · m_L^-α
        ("eps", "hidden_weight"): Exponent(width=-1.0, depth_alpha=-1.0),
        ("eps", "hidden_bias"): Exponent(width=-1.0, depth_alpha=-1.0),
    }
)
RESIDUAL_MULTIPLIER = Exponent(depth_alpha=-1.0)  # h <- h + m_L^-α · F(LN(h))
OUTPUT_MULTIPLIER = Exponent(width=-1.0)  # logits = m_N^-1 · h W_unembᵀ


@dataclass(frozen=True)
class Parameterization:
    """A point of the family: width scaling on/off and a depth exponent α (None: no depth scaling)."""

    name: str
    alpha: float | None
    width_scaling: bool


PRESETS: Mapping[str, Parameterization] = MappingProxyType(
    {
        "sp": Parameterization("sp", alpha=None, width_scaling=False),
        "mup": Parameterization("mup", alpha=None, width_scaling=True),
        "alpha0.5": Parameterization("alpha0.5", alpha=0.5, width_scaling=True),
        "completep": Parameterization("completep", alpha=1.0, width_scaling=True),
    }
)
_ALPHA_RE = re.compile(r"^alpha(\d+(?:\.\d+)?)$")
PAPER_ORDER = ("sp", "mup", "alpha0.5", "completep")
"""The order the paper lists them in: tables, plots and MLflow runs follow it."""
DISPLAY_NAMES = {"sp": "SP", "mup": "µP", "alpha0.5": "α=0.5", "completep": "CompleteP"}


def display_name(parameterization: str) -> str:
    return DISPLAY_NAMES.get(parameterization, parameterization)


def paper_rank(parameterization: str) -> int:
    """Position in the paper's order; any other parameterization after those four."""
    return PAPER_ORDER.index(parameterization) if parameterization in PAPER_ORDER else len(PAPER_ORDER)


def ordered(values) -> list[str]:
    """Parameterizations in the paper's order (SP, µP, α=0.5, CompleteP), others after by name."""
    return sorted(set(values), key=lambda p: (paper_rank(p), p))


def in_paper_order(df):
    """Rows of a table with a ``parameterization`` column sorted in the paper's order (stable)."""
    rank = {p: i for i, p in enumerate(ordered(df["parameterization"]))}
    return df.sort_values("parameterization", key=lambda s: s.map(rank), kind="stable")


NAMES_HELP = "sp, mup, completep, or alphaX with X in [0.5, 1] (e.g. alpha0.5, alpha0.75)"


def get_parameterization(name: str) -> Parameterization:
    """Look up a preset, or build ``alphaX`` for any X in [0.5, 1] (``alpha1`` is CompleteP)."""
    if name in PRESETS:
        return PRESETS[name]
    match = _ALPHA_RE.match(name)
    if not match:
        raise ValueError(f"unknown parameterization {name!r}; use {NAMES_HELP}")
    alpha = float(match.group(1))
    if not ALPHA_MIN <= alpha <= ALPHA_MAX:
        raise ValueError(f"parameterization {name!r}: alpha must be in [0.5, 1]; use {NAMES_HELP}")
    if alpha == 1.0:
        return PRESETS["completep"]
    if alpha == 0.5:
        return PRESETS["alpha0.5"]
    return Parameterization(f"alpha{alpha}", alpha=alpha, width_scaling=True)


@dataclass(frozen=True)
class GroupRule:
    """Multipliers of one parameter group's base values."""

    init_std_mult: float | None  # None: fixed init (norm gains 1, biases 0)
    lr_mult: float
    weight_decay_mult: float  # 0 where the group never decays
    eps_mult: float


@dataclass(frozen=True)
class ScalingRules:
    """Everything the model and optimizer need to know about a parameterization at one shape."""

    parameterization: str
    alpha: float | None
    width: int
    depth: int
    base_width: int
    base_depth: int
    width_mult: float
    depth_mult: float
    residual_multiplier: float
    output_multiplier: float
    groups: Mapping[str, GroupRule] = field(repr=False)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the ``explain --json`` contract)."""
        return {
            "parameterization": self.parameterization,
            "alpha": self.alpha,
            "width": self.width,
            "depth": self.depth,
            "base_width": self.base_width,
            "base_depth": self.base_depth,
            "width_mult": self.width_mult,
            "depth_mult": self.depth_mult,
            "residual_multiplier": self.residual_multiplier,
            "output_multiplier": self.output_multiplier,
            "groups": {g: vars(r).copy() for g, r in self.groups.items()},
        }


def _check_shape(**dims: int) -> None:
    for name, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer (got {value!r})")


def scaling_rules(
    parameterization: str | Parameterization,
    *,
    width: int,
    depth: int,
    base_width: int,
    base_depth: int,
) -> ScalingRules:
    """Resolve the multipliers of every parameter group at (width, depth) for a base shape."""
    p = get_parameterization(parameterization) if isinstance(parameterization, str) else parameterization
    _check_shape(width=width, depth=depth, base_width=base_width, base_depth=base_depth)
    m_n, m_l = width / base_width, depth / base_depth

    def f(quantity: str, group: str) -> float:
        return RULES.get((quantity, group), ONE).factor(p, m_n, m_l)

    groups = {
        g: GroupRule(
            init_std_mult=math.sqrt(f("init_var", g)) if g in INITIALIZED_GROUPS else None,
            lr_mult=f("lr", g),
            weight_decay_mult=f("weight_decay", g) if g in DECAYED_GROUPS else 0.0,
            eps_mult=f("eps", g),
        )
        for g in GROUPS
    }
    return ScalingRules(
        parameterization=p.name,
        alpha=p.alpha,
        width=width,
        depth=depth,
        base_width=base_width,
        base_depth=base_depth,
        width_mult=m_n,
        depth_mult=m_l,
        residual_multiplier=RESIDUAL_MULTIPLIER.factor(p, m_n, m_l),
        output_multiplier=OUTPUT_MULTIPLIER.factor(p, m_n, m_l),
        groups=MappingProxyType(groups),
    )
