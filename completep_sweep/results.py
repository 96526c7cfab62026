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
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SpecError
from .outcome import FINISHED
from .search import Plan, make_plan, row_outcome
from .store import ResultStore, sweep_store
from .sweep import Resolver, Sweep, parse_sweep, spec_hash
from .trial import HASHED_FIELDS, Role, TrialConfig, fields_with


@dataclass(frozen=True, eq=False)
class SweepResults:
    """One sweep's results folder, read once per command (``open_results``) and passed to whatever
    needs it: the runner, the analysis, the report and the MLflow mirror. Nothing downstream reads
    spec.toml or a trial file again."""

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
    """Current trials without a finished row (an adaptive search: those of its current round)."""
    plan: Plan | None = None
    """How the sweep chooses its trials (None without a recorded sweep file)."""
    loaded: pd.DataFrame | None = None
    """Every row in the folder as read (current, stale and errored): what MLflow mirrors."""
    spec_text: str | None = None
    """spec.toml as read (also when it no longer expands)."""

    @property
    def all_rows(self) -> pd.DataFrame:
        return self.rows if self.loaded is None else self.loaded

    @property
    def total(self) -> int | None:
        """Trials of the sweep in all, when that is known up front (a grid)."""
        if self.plan is None:
            return None
        low, high = self.plan.bounds()
        return low if low == high else None

    def progress(self) -> str:
        """'of the 12 trials of the current sweep; 0 pending', or the search's bounds."""
        if self.plan is None:
            return ""
        low, high = self.plan.bounds()
        if low == high:
            return f" of the {low} trials of the current sweep; {len(self.pending)} pending"
        method = self.sweep.spec.search.method
        if self.plan.finished:
            return f"; the {method} search is complete ({len(self.plan.planned())} trials)"
        return (
            f"; the {method} search has {len(self.pending)} trial(s) to run now and will take between "
            f"{low} and {high} in all"
        )


def open_results(store: ResultStore, *, include_stale: bool = False, _depth: int = 0) -> SweepResults:
    """The rows of ``store`` split by the sweep file it was last run with (``spec.toml``), read once:
    spec.toml once, each trial file once, the plan replayed once."""
    rows = store.load()
    text = store.read_spec()
    sweep = _recorded_sweep(store, text, _depth)
    if sweep is None:
        return SweepResults(store, None, rows, rows.iloc[:0], 0, (), loaded=rows, spec_text=text)
    if sweep.spec.search.method == "optuna":  # on object storage: the study's copy in the local cache
        from .search.study import STUDY_FILE
        from .store_fs import pull

        pull(store, STUDY_FILE)
    plan = make_plan(sweep, rows, store.root, read_only=True, folder=store.folder)
    planned = {c.trial_id: c for c in plan.planned()}
    current = rows["trial_id"].isin(set(planned))
    stale = rows[~current]
    compatible = stale[_compatible(stale, sweep)] if len(stale) else stale
    used = pd.concat([rows[current], compatible], ignore_index=True) if include_stale else rows[current]
    if include_stale:
        stale = stale[~stale["trial_id"].isin(compatible["trial_id"])]
    done = set(rows.loc[current & rows["status"].ne("error"), "trial_id"])
    pending = tuple(c for tid, c in planned.items() if tid not in done)
    return SweepResults(
        store,
        sweep,
        used.reset_index(drop=True),
        stale.reset_index(drop=True),
        len(compatible),
        pending,
        plan,
        loaded=rows,
        spec_text=text,
    )


def best_value_resolver(results_root: Path | str, _depth: int = 0) -> Resolver:
    """For ``{ around = "sweep" }``: the value of an HP at that sweep's best grid point (lowest mean
    loss over seeds, a diverged seed making it infinite), from its current rows."""

    def best(name: str, hp: str) -> float:
        store = sweep_store(results_root, name, read_only=True)
        if _depth > 4:
            raise SpecError(f"sweeps refer to each other in a loop through {name!r}; break the loop")
        rows = open_results(store, _depth=_depth + 1).rows if store.exists() else None
        if rows is None or rows.empty or not rows["status"].isin(FINISHED).any():
            raise SpecError(
                f"sweep {name!r} has no finished trials in {store.location}; run it first "
                f"(completep-sweep run sweeps/{name}.toml)"
            )
        if hp not in rows:
            raise SpecError(f"sweep {name!r} has no {hp} column")
        rows = rows[rows["status"].isin(FINISHED)].assign(
            _loss=lambda d: [row_outcome(r) for r in d.to_dict("records")]
        )
        point = [
            c for c in fields_with(Role.HP, Role.TRAINING, Role.SHAPE, Role.PARAMETERIZATION) if c in rows
        ]
        means = rows.groupby(point, dropna=False)["_loss"].mean()
        if not np.isfinite(means).any():
            raise SpecError(f"every trial of sweep {name!r} diverged; it has no best {hp}")
        return float(dict(zip(means.index.names, means.idxmin()))[hp])

    return best


def recorded_resolution(store: ResultStore, text: str) -> dict[str, dict]:
    """What the latest run of this very text resolved (``Sweep.resolved``), from its run record;
    {} for a folder an earlier release wrote (its ``around`` centres are looked up afresh)."""
    digest = spec_hash(text)
    for record in reversed(store.runs()):
        if record.get("spec_hash") == digest and isinstance(record.get("resolved"), dict):
            return record["resolved"]
    return {}


def _recorded_sweep(store: ResultStore, text: str | None, depth: int = 0) -> Sweep | None:
    if text is None:
        return None
    try:
        return parse_sweep(
            text,
            source=str(store.spec_path),
            resolve=best_value_resolver(store.results_root, depth),
            recorded=recorded_resolution(store, text),
        )
    except SpecError as e:
        sys.stderr.write(
            f"warning: the recorded sweep file no longer expands ({e}); every row in {store.location} "
            "is used; run the sweep again to record a valid one\n"
        )
        return None


def _compatible(rows: pd.DataFrame, sweep: Sweep) -> pd.Series:
    """Rows equal to the current sweep on every hashed field it does not sweep (seed aside)."""
    swept = set(sweep.spec.grid) | {"parameterization", "seed"}
    template = sweep.template
    mask = rows["parameterization"].isin(sweep.spec.parameterizations)
    for f in HASHED_FIELDS:
        if f.name in swept or f.name not in rows:
            continue
        value = getattr(template, f.name)
        column = rows[f.name]
        mask &= column.isna() if value is None else column.eq(value)
    return mask
