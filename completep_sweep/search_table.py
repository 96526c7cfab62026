"""The ``[search]`` table checked against the grid it searches: what the method needs is there.

Called by sweep.parse_sweep before any trial runs, so a bad table exits 2 naming its key.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import SpecError
from .sweepfile import Search, SweepSpec
from .trial import FIELD_TYPES, HP_ROLES, SHAPE_AND_SEED, ConfigError, TrialConfig, fields_with


def check_search(spec: SweepSpec, axes: dict, source: str) -> None:
    """The [search] table against the grid: what the method needs is there."""
    search = spec.search
    if search.method == "decided" and len(axes.get("depth", ())) < 3:
        raise SpecError(
            f'{source}: grid.depth: method = "decided" stops when the depth verdicts are decided, and the '
            "depth payoff needs at least 3 depths; give grid.depth 3 or more values, e.g. [2, 8, 32]"
        )
    if search.method in ("bracket", "decided"):
        hp = search.hp
        if hp not in axes or FIELD_TYPES.get(hp) is not float or hp not in fields_with(*HP_ROLES):
            raise SpecError(
                f"{source}: search.hp: {hp!r} must be a numeric HP swept in [grid] (e.g. lr = "
                "{ log2_range = [-9, -5] }); the bracket search starts from its values"
            )
        if min(axes[hp]) <= 0:
            raise SpecError(
                f"{source}: grid.{hp}: the bracket search works in log2({hp}); use positive values"
            )
    elif search.method == "optuna":
        single = [
            k
            for k in (*SHAPE_AND_SEED, *(k for k in axes if k not in fields_with(*HP_ROLES)))
            if len(axes.get(k, ())) > 1
        ]
        if len(spec.parameterizations) > 1 or single:
            what = "parameterizations" if len(spec.parameterizations) > 1 else f"grid.{single[0]}"
            raise SpecError(
                f'{source}: {what}: method = "optuna" tunes base HPs at one shape, one '
                "parameterization and one seed; give one value (a transfer study is a bracket search)"
            )
        if not any(k in fields_with(*HP_ROLES) for k in axes):
            raise SpecError(
                f'{source}: grid: method = "optuna" needs an HP to tune, e.g. lr = '
                "{ log2_range = [-12, -3] }"
            )


MAX_DOUBLINGS = 4
"""Most depths ``max_depth`` may add (16x the deepest grid depth): each doubles a trial's cost, and
a value past it is more likely a typo than a plan; deeper depths can go in the grid."""


def deeper_depths(deepest: int, max_depth: int | None) -> list[int]:
    """The depths ``[search] max_depth`` lets the decided search add: doublings of the deepest tested
    depth, up to max_depth."""
    out, depth = [], 2 * deepest
    while max_depth is not None and depth <= max_depth:
        out.append(depth)
        depth *= 2
    return out


def check_deepening(search: Search, trials: Sequence[TrialConfig], source: str) -> None:
    """``max_depth`` adds at least one doubling, and the model accepts every depth it may add (at every
    width and parameterization of the grid): found now, not when a deeper trial fails."""
    if search.max_depth is None or not trials:
        return
    deepest = max(t.depth for t in trials)
    adds = deeper_depths(deepest, search.max_depth)
    if not adds:
        raise SpecError(
            f"{source}: search.max_depth: {search.max_depth} adds no depth (the search doubles the deepest "
            f"grid depth, {deepest}); set it to {2 * deepest} or more, or remove it"
        )
    if adds[-1] != search.max_depth:  # say what it would do rather than round it silently
        raise SpecError(
            f"{source}: search.max_depth: {search.max_depth} is not a doubling of the deepest grid depth "
            f"({deepest}), so the search would stop at {adds[-1]}; set it to {adds[-1]} or {2 * adds[-1]}"
        )
    if len(adds) > MAX_DOUBLINGS:
        raise SpecError(
            f"{source}: search.max_depth: {search.max_depth} is {len(adds)} doublings past the deepest grid "
            f"depth ({deepest}), and each doubles a trial's cost; at most {MAX_DOUBLINGS}: set it to "
            f"{adds[MAX_DOUBLINGS - 1]} or less, or add deeper depths to grid.depth"
        )
    shapes = {(t.parameterization, t.width): t for t in trials if t.depth == deepest}
    for depth in adds:
        for config in shapes.values():
            try:
                config.replace(depth=depth)
            except ConfigError as e:
                ok = [d for d in adds if d < depth]
                fix = f"lower it to {ok[-1]}" if ok else "remove it"
                raise SpecError(
                    f"{source}: search.max_depth: depth {depth} is invalid for this model ({e}); {fix}"
                ) from None
