"""Which trials a sweep consists of, given what has been measured: the ``[search]`` methods.

A ``Plan`` hands the runner one trial at a time (``take``), hears back how each ended (``record``),
and says which trials make up the sweep so far (``planned``): ``status`` counts those, the analysis
reads their rows (any other row is stale), and a restarted driver rebuilds the same plan from the
rows on disk. Every trial is an ordinary ``TrialConfig``: resume, exactly-once rows and MLflow work
the same for every method.

- ``grid``: every point of the grid (bounded and known up front).
- ``bracket``: per group, search one HP in log2 space from the grid outward (bracket.py).
- ``decided``: the bracket at the base depth, three points around its optimum at every other depth
  (extended while the best is on an edge), then seeds only where a depth verdict is still open, until
  every parameterization's verdicts are decided or its budget is spent (decide.py).
- ``optuna``: TPE over the swept HPs at one shape, the study kept in results/<sweep>/optuna.db
  (study.py).
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Protocol

import pandas as pd

from ..outcome import FINISHED, outcome
from ..sweep import Sweep
from ..trial import TrialConfig
from .bracket import BracketRules, Group


class Plan(Protocol):
    def take(self) -> TrialConfig | None:
        """The next trial to run, or None (wait for running ones, or nothing is left)."""

    def record(self, config: TrialConfig, status: str, loss: float | None) -> None:
        """A trial ended: ok (loss), diverged, or error (its row is not final; a later run retries)."""

    @property
    def finished(self) -> bool:
        """Nothing left to take and nothing running."""

    def planned(self) -> list[TrialConfig]:
        """The sweep's trials so far: finished, running and queued (what `status` and the analysis use)."""

    def bounds(self) -> tuple[int, int]:
        """(fewest, most) trials the sweep can have in all."""


def row_outcome(row: dict) -> float:
    """The loss a search compares for a finished row: its final validation loss (outcome.py's rule)."""
    return outcome(row.get("status"), row.get("final_val_loss"))


def finished_rows(rows: pd.DataFrame) -> dict[str, float]:
    """trial_id -> loss of every ok or diverged row (errored trials are not finished)."""
    done = rows[rows["status"].isin(FINISHED)] if len(rows) else rows
    return {r["trial_id"]: row_outcome(r) for r in done.to_dict("records")}


class GridPlan:
    """Every point of the grid; those with a finished row are not run again."""

    def __init__(self, sweep: Sweep, done: dict[str, float]):
        self.sweep = sweep
        self.queue = deque(sweep.pending(set(done)))
        self.out = 0

    def take(self) -> TrialConfig | None:
        if not self.queue:
            return None
        self.out += 1
        return self.queue.popleft()

    def record(self, config, status, loss) -> None:
        self.out -= 1

    @property
    def finished(self) -> bool:
        return not self.queue and self.out <= 0

    def planned(self) -> list[TrialConfig]:
        return list({t.trial_id: t for t in self.sweep.trials}.values())

    def bounds(self) -> tuple[int, int]:
        n = len(self.sweep.ids)
        return n, n


class BracketPlan:
    """Per group, the bracket rules of bracket.py; rounds replayed from finished rows first."""

    def __init__(self, sweep: Sweep, done: dict[str, float]):
        search = sweep.spec.search
        self.sweep, self.hp, self.done = sweep, search.hp, dict(done)
        axes = sweep.axes
        grid = tuple(sorted(math.log2(v) for v in axes[self.hp]))
        self.rules = BracketRules.of(
            search, grid=grid, base_seeds=tuple(axes.get("seed", [sweep.template.seed]))
        )
        self.groups: dict[tuple, Group] = {}
        self.bases: dict[tuple, TrialConfig] = {}
        start = self._starting_rules(self.rules)
        for config in sweep.trials:  # one group per combination of everything but the HP and the seed
            key = self._key(config)
            if key not in self.groups:
                self.groups[key] = Group(start)
                self.bases[key] = config
        self.queue: dict[tuple, deque] = {k: deque() for k in self.groups}
        self.out: dict[tuple, int] = {k: 0 for k in self.groups}
        for key in list(self.groups):  # a decided search may add groups (deeper depths) as it replays
            self._advance(key)

    def _starting_rules(self, rules: BracketRules) -> BracketRules:
        """Each group's rules at the start (a subclass may cap them)."""
        return rules

    def _key(self, config: TrialConfig) -> tuple:
        values = config.to_dict()
        return tuple(
            values[k] for k in ("parameterization", *sorted(self.sweep.axes)) if k not in (self.hp, "seed")
        )

    def _config(self, key: tuple, point: tuple[float, int]) -> TrialConfig:
        x, seed = point
        return self.bases[key].replace(**{self.hp: 2.0**x, "seed": seed})

    def _advance(self, key: tuple) -> None:
        """Plan the group's next rounds; points with a finished row are filled in without running."""
        group = self.groups[key]
        while not self.queue[key] and not self.out[key]:
            points = group.next_round()
            if not points:
                return
            for point in points:
                config = self._config(key, point)
                if config.trial_id in self.done:
                    group.measured[point] = self.done[config.trial_id]
                else:
                    self.queue[key].append(config)

    def take(self) -> TrialConfig | None:
        for key, queue in self.queue.items():
            if queue:
                self.out[key] += 1
                return queue.popleft()
        return None

    def record(self, config: TrialConfig, status: str, loss: float | None) -> None:
        key = self._key(config)
        if key not in self.groups:
            return
        point = (math.log2(getattr(config, self.hp)), config.seed)
        value = outcome(status, loss)
        self.groups[key].measured[point] = value
        if value is not None:
            self.done[config.trial_id] = value
        self.out[key] -= 1
        self._advance(key)

    @property
    def finished(self) -> bool:
        return not any(self.queue.values()) and not any(self.out.values())

    def planned(self) -> list[TrialConfig]:
        configs = [self._config(k, p) for k, g in self.groups.items() for p in g.measured]
        configs += [c for q in self.queue.values() for c in q]
        return list({c.trial_id: c for c in configs}.values())

    def bounds(self) -> tuple[int, int]:
        low, high = self.rules.bounds()
        return low * len(self.groups), high * len(self.groups)

    def reach(self) -> list[tuple[TrialConfig, int]]:
        """Each shape the search can measure (a trial there) and the most trials it may take there:
        what ``validate`` prices the most work at (estimate.most_work)."""
        return [(self.bases[k], self.rules.max_trials) for k in self.groups]

    def phases(self) -> dict[tuple, str]:
        """Why each group's search stopped (or what it does now): see bracket.Group.phase."""
        return {key: group.phase for key, group in self.groups.items()}


def make_plan(sweep: Sweep, rows: pd.DataFrame, root: Path, *, read_only: bool = False, folder=None) -> Plan:
    """The plan of ``sweep`` given the rows already in its results folder ``root`` (local: the
    Optuna study's SQLite file is there). ``folder``: the results folder itself, local or on object
    storage, where a decided search keeps its looks (default ``root``).

    ``read_only``: to read the plan (status, report), not to run it: the Optuna study is neither
    created nor settled, and no look is written.
    """
    done = finished_rows(rows)
    method = sweep.spec.search.method
    if method == "bracket":
        return BracketPlan(sweep, done)
    if method == "decided":
        from .decide import DecidedPlan
        from .looks import looks_of

        return DecidedPlan(sweep, done, looks=looks_of(folder or root, read_only=read_only))
    if method == "optuna":
        from .study import OptunaPlan

        return OptunaPlan(sweep, done, root, read_only=read_only, rows=rows)
    return GridPlan(sweep, done)
