"""A sweep's results as its sweep file defines them now: current rows, stale rows, pending trials.

A results folder keeps every row it ever received. When the sweep file changes a setting (seq_len,
the data, eval_batches, ...), the trials get new ids and the old rows stay on disk; they belong to
an earlier version of the sweep and are never averaged into its verdict. ``--include-stale`` adds
back only the *compatible* ones: rows that differ from the current sweep in nothing but the values
of its swept axes and the seed (e.g. a learning rate that was dropped from the grid).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pandas as pd

from .presets import SpecError
from .spec import Sweep, parse_sweep
from .store import ResultStore
from .trial import HASHED_FIELDS, TrialConfig


@dataclass(frozen=True, eq=False)
class SweepResults:
    store: ResultStore
    sweep: Sweep | None
    """The recorded sweep file, expanded; None when the folder has none (every row counts)."""
    rows: pd.DataFrame
    """The rows the analysis uses: the current version's (and compatible stale ones if asked)."""
    stale: pd.DataFrame
    """Rows of earlier versions of the sweep that are not used."""
    n_stale_compatible: int
    """Stale rows that ``--include-stale`` would use (included in ``rows`` when it was given)."""
    pending: tuple[TrialConfig, ...]
    """Current trials without a finished row."""

    @property
    def total(self) -> int | None:
        return len(self.sweep.ids) if self.sweep else None


def open_results(store: ResultStore, *, include_stale: bool = False) -> SweepResults:
    """The rows of ``store`` split by the sweep file it was last run with (``spec.toml``)."""
    rows = store.load()
    sweep = _recorded_sweep(store)
    if sweep is None:
        return SweepResults(store, None, rows, rows.iloc[:0], 0, ())
    current = rows["trial_id"].isin(sweep.ids)
    stale = rows[~current]
    compatible = stale[_compatible(stale, sweep)] if len(stale) else stale
    used = pd.concat([rows[current], compatible], ignore_index=True) if include_stale else rows[current]
    if include_stale:
        stale = stale[~stale["trial_id"].isin(compatible["trial_id"])]
    done = set(rows.loc[current & rows["status"].ne("error"), "trial_id"])
    return SweepResults(store, sweep, used.reset_index(drop=True), stale.reset_index(drop=True),
                        len(compatible), tuple(sweep.pending(done)))


def _recorded_sweep(store: ResultStore) -> Sweep | None:
    if not store.spec_path.is_file():
        return None
    try:
        return parse_sweep(store.spec_path.read_text(), source=str(store.spec_path))
    except SpecError as e:
        sys.stderr.write(f"warning: the recorded sweep file no longer expands ({e}); every row in {store.root} "
                         "is used; run the sweep again to record a valid one\n")
        return None


def _compatible(rows: pd.DataFrame, sweep: Sweep) -> pd.Series:
    """Rows equal to the current sweep on every hashed field it does not sweep (seed aside)."""
    swept = set(sweep.spec.grid) | {"parameterization", "seed"}
    template = sweep.trials[0]
    mask = rows["parameterization"].isin(sweep.spec.parameterizations)
    for f in HASHED_FIELDS:
        if f.name in swept or f.name not in rows:
            continue
        value = getattr(template, f.name)
        column = rows[f.name]
        mask &= column.isna() if value is None else column.eq(value)
    return mask
