"""From trial rows to grid points: the one preparation every analysis step shares.

Conventions (the analysis' own, stated here; the README's "How the verdicts are reached" explains them):
- A shape is (width, depth); the group key is (parameterization, width, depth).
- Loss per trial: ``loss`` (default final_val_loss). A ``diverged`` trial, or an ``ok`` trial whose loss
  is not finite, counts as +inf. ``error`` trials are excluded and counted. Pending trials are absent.
- Seeds are averaged per grid point; one diverged seed makes the point inf (a learning rate that
  diverges for some seeds is not usable).
- Swept HPs are the numeric HP and training fields (trial.HP_ROLES) that vary in the data. Any other
  config field that varies (``decay``, a base shape, the data) splits grid points but gets no
  optimum of its own, so rows that differ in it are never averaged together.
- The optimum of one HP is taken along the 1-D slice through the shape's best HP combination.
- All HP arithmetic is in log2(HP) ("octaves"): the grids are powers of two and the transfer
  tolerance is stated in octaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..outcome import outcomes
from ..trial import HP_ROLES, Role, fields_with

KEY = ("parameterization", "width", "depth")
HP_FIELDS = fields_with(*HP_ROLES)
# Varying values of these split grid points; the seed is averaged over, labels change nothing.
SPLIT_FIELDS = fields_with(
    Role.BASE_SHAPE, Role.MODEL, Role.DERIVED, Role.HP, Role.TRAINING, Role.MEASUREMENT
)


@dataclass(frozen=True, eq=False)
class Prepared:
    trials: pd.DataFrame  # non-error trials with a `_value` column (loss, inf if diverged)
    errors: pd.DataFrame  # error trials, excluded but counted
    hps: tuple[str, ...]  # swept numeric HPs
    combo: tuple[str, ...]  # all varying config columns that define a grid point (hps first)
    points: pd.DataFrame  # seed-mean per (key, combo): loss, n_seeds, n_diverged
    by_shape: dict[str, dict[tuple, pd.DataFrame]]  # "points"/"trials"/"errors" -> key -> rows
    _slices: dict[tuple, tuple[pd.DataFrame, pd.DataFrame, int]] = field(default_factory=dict, repr=False)
    """``hp_slice`` results, built once per (shape, HP) and shared by the lines, optima and plots."""

    def rows(self, kind: str, key: tuple) -> pd.DataFrame:
        """Rows of ``kind`` at one (parameterization, width, depth); split once, looked up often."""
        found = self.by_shape[kind].get(tuple(key))
        return found if found is not None else getattr(self, kind).iloc[:0]

    def keys(self) -> list[tuple]:
        """Every (parameterization, width, depth) with a grid point, sorted."""
        return sorted(self.points[list(KEY)].drop_duplicates().itertuples(index=False, name=None))


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def swept_hps(trials: pd.DataFrame) -> tuple[str, ...]:
    """Numeric HP and training columns that take more than one value in ``trials`` (field order)."""
    return tuple(
        c
        for c in HP_FIELDS
        if c in trials.columns and _is_numeric(trials[c]) and trials[c].nunique(dropna=True) > 1
    )


def prepare(trials: pd.DataFrame, loss: str) -> Prepared:
    missing = [c for c in (*KEY, "seed", "status", loss) if c not in trials.columns]
    if missing:
        raise ValueError(f"trials DataFrame lacks column(s) {missing}; expected TrialResult.row() rows")
    is_error = trials["status"].eq("error")
    df = trials.loc[~is_error].copy()
    df["_value"] = outcomes(df["status"], df[loss])  # diverged (or a non-finite loss): inf
    hps = swept_hps(trials)
    split = tuple(
        c
        for c in SPLIT_FIELDS
        if c in trials.columns and c not in hps and trials[c].astype(str).nunique() > 1
    )
    combo = hps + split
    keys = list(KEY) + list(combo)
    points = (
        df.groupby(keys, dropna=False, sort=True)
        .agg(
            loss=("_value", "mean"),
            n_seeds=("seed", "nunique"),
            n_diverged=("_value", lambda v: int(np.isinf(v).sum())),
        )
        .reset_index()
    )
    errors = trials.loc[is_error]
    by_shape = {
        kind: {k: g for k, g in frame.groupby(list(KEY), sort=False)}
        for kind, frame in (("points", points), ("trials", df), ("errors", errors))
    }
    return Prepared(df, errors, hps, combo, points, by_shape)


def match(df: pd.DataFrame, values: dict[str, Any]) -> pd.Series:
    """Rows whose columns equal ``values`` (NaN equals NaN, as in a groupby with dropna=False)."""
    mask = pd.Series(True, index=df.index)
    for col, v in values.items():
        mask &= df[col].isna() if pd.isna(v) else df[col].eq(v)
    return mask


def best_combo(points: pd.DataFrame, combo: Iterable[str]) -> dict[str, Any]:
    """The HP combination with the lowest seed-mean loss at one shape (first row if all diverged)."""
    best = points.sort_values("loss", kind="stable").iloc[0]
    return {c: best[c] for c in combo}


def hp_slice(prep: Prepared, key: tuple, hp: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Seed-mean points, per-trial rows and error count of the 1-D slice along ``hp`` at one shape,
    the other varying columns held at the shape's best combination (computed once per prep)."""
    cache_key = (tuple(key), hp)
    if cache_key not in prep._slices:
        prep._slices[cache_key] = _hp_slice(prep, key, hp)
    return prep._slices[cache_key]


def _hp_slice(prep: Prepared, key: tuple, hp: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    points = prep.rows("points", key)
    fixed = {c: v for c, v in best_combo(points, prep.combo).items() if c != hp}
    line = points[match(points, fixed)].sort_values(hp)
    line = line[line[hp].notna()]
    trials = prep.rows("trials", key)
    trials = trials[match(trials, fixed)]
    errors = prep.rows("errors", key)
    n_error = int(match(errors, fixed).sum()) if len(errors) else 0
    return line, trials, n_error


def slice_table(prep: Prepared, hp: str) -> pd.DataFrame:
    """``hp_slice`` for every shape at once, with the key columns (what the loss-curve plots draw).

    Columns: the key, ``hp``, loss (seed mean, inf if a seed diverged), n_seeds, n_diverged, and the
    fixed values of the other varying config columns (constant down each slice).
    """
    lines = [hp_slice(prep, key, hp)[0] for key in prep.keys()]
    return pd.concat(lines, ignore_index=True) if lines else pd.DataFrame(columns=[*KEY, hp, "loss"])


def mode(s: pd.Series | None) -> Any:
    if s is None or s.dropna().empty:
        return pd.NA
    return s.mode().iloc[0]


def log2(v: np.ndarray | float) -> np.ndarray:
    """log2 where positive, NaN elsewhere (weight_decay 0 has no position in octaves)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2(np.where(np.asarray(v, dtype=float) > 0, v, np.nan))
