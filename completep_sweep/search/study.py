"""``[search] method = "optuna"``: TPE over the swept HPs at one shape, as Optuna ask/tell.

The study lives in ``results/<sweep>/optuna.db`` (Optuna's own RDB storage), so a killed or repeated
run continues it (for results on object storage, in the local cache folder: store_fs.py copies it
down before a run or a read and up after a run). Ray Tune's ``OptunaSearch`` is not used: on resume
it re-enqueues start points, restarts the sampler's random stream (repeating earlier suggestions)
and leaves asked-but-never-told trials RUNNING for good. Instead, on start:
- a trial the study still calls RUNNING is told its value when its row is on disk (the driver died
  after writing it), else marked FAIL (it never finished; it does not count);
- the sampler is reseeded from the number of trials asked so far, so an interrupted study asks what
  an uninterrupted one would have asked (exactly so with one trial at a time);
- a suggestion whose trial already has a row is told that row at once, never run twice.
``n_trials`` counts COMPLETE and PRUNED (diverged) trials, each trial once, across runs and interruptions.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd

from ..outcome import outcome
from ..sweep import Sweep
from ..trial import SHAPE_AND_SEED, TrialConfig

STUDY_FILE = "optuna.db"


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would bury the progress
    return optuna


def distributions(sweep: Sweep) -> dict:
    """Each swept HP: a log2_range becomes log-uniform over its range, a list a categorical."""
    optuna = _optuna()
    dims = {}
    for name, axis in sweep.spec.grid.items():
        if name in SHAPE_AND_SEED:
            continue
        if isinstance(axis, dict) and "log2_range" in axis:
            lo, hi = axis["log2_range"]
            dims[name] = optuna.distributions.FloatDistribution(2.0**lo, 2.0**hi, log=True)
        else:
            dims[name] = optuna.distributions.CategoricalDistribution(list(sweep.axes[name]))
    return dims


def _damage_errors() -> tuple[type[BaseException], ...]:
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    # KeyError: the file reads but holds no study of this name (emptied, or another sweep's file);
    # StorageInternalError: Optuna's wrapping of a SQLite error met inside a session
    return (SQLAlchemyError, StorageInternalError, KeyError)


_DAMAGE = _damage_errors()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:160] if text else type(e).__name__


def _open_read_only(path: Path, name: str):
    """The study, read-only (SQLite mode=ro: nothing is created or changed), or None when there is
    no file yet. Raises one of _DAMAGE when the file does not read as this sweep's study."""
    optuna = _optuna()
    if not (path.is_file() and path.stat().st_size):
        return None
    storage = optuna.storages.RDBStorage(
        f"sqlite:///file:{path.resolve()}?mode=ro&uri=true",
        skip_table_creation=True,
        skip_compatibility_check=True,
    )
    study = optuna.load_study(storage=storage, study_name=name)
    study.get_trials(deepcopy=False)  # a truncated file opens, and fails only when read
    return study


class OptunaPlan:
    """Asks the study for trials until ``n_trials`` have finished (COMPLETE or PRUNED)."""

    def __init__(
        self,
        sweep: Sweep,
        done: dict[str, float],
        root: Path,
        *,
        read_only: bool = False,
        rows: pd.DataFrame | None = None,
    ):
        self.sweep, self.done = sweep, dict(done)
        search = sweep.spec.search
        self.n_trials, self.sampler_seed = search.n_trials, search.sampler_seed
        self.space = distributions(sweep)
        self.live: dict[str, int] = {}  # trial_id -> optuna trial number
        self.path = Path(root) / STUDY_FILE
        self.recorded = self._recorded(rows)
        self.study = None
        if read_only:  # status, report, validate: open it read-only (SQLite mode=ro), never create or settle
            try:
                self.study = _open_read_only(self.path, sweep.name)
            except _DAMAGE as e:
                sys.stderr.write(
                    f"warning: {self.path} does not read ({_first_line(e)}); the trials are read from "
                    "their rows, which are intact; `completep-sweep run` sets it aside and rebuilds it\n"
                )
            return
        try:
            self._open()
        except _DAMAGE as e:  # truncated or overwritten: the rows are the record, the study an index
            aside = self.path.with_name(f"{STUDY_FILE}.damaged-{time.time_ns()}")
            os.replace(self.path, aside)
            sys.stderr.write(
                f"warning: {self.path} does not read ({_first_line(e)}); moved to {aside.name} and "
                f"rebuilt from the {len(self.recorded)} rows of this sweep\n"
            )
            self._open()

    def _open(self) -> None:
        optuna = _optuna()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(f"sqlite:///{self.path}")
        self.study = optuna.create_study(
            storage=storage, study_name=self.sweep.name, direction="minimize", load_if_exists=True
        )
        self._settle_running()
        self._add_missing()

    def _recorded(self, rows: pd.DataFrame | None) -> dict[str, tuple[dict, float]]:
        """trial_id -> (params, loss) of the finished rows that are trials of this study: their config
        is the sweep's template with only the searched HPs changed."""
        out = {}
        if rows is None or rows.empty:
            return out
        for row in rows[rows["trial_id"].isin(set(self.done))].to_dict("records"):
            params = {name: row[name] for name in self.space}
            try:
                config = self._config(params)
            except (TypeError, ValueError):
                continue
            if config.trial_id == row["trial_id"]:
                out[row["trial_id"]] = (params, self.done[row["trial_id"]])
        return out

    def _add_missing(self) -> None:
        """Rows whose trial the study does not hold (a study file emptied, deleted or set aside): told
        as finished trials, so they count and no earlier row turns stale."""
        optuna = _optuna()
        known = {self._config(t.params).trial_id for t in self._trials() if t.params}
        for trial_id, (params, loss) in sorted(self.recorded.items()):
            if trial_id in known:
                continue
            state = (
                optuna.trial.TrialState.COMPLETE if math.isfinite(loss) else optuna.trial.TrialState.PRUNED
            )
            try:
                self.study.add_trial(
                    optuna.trial.create_trial(
                        params=params,
                        distributions=self.space,
                        value=loss if math.isfinite(loss) else None,
                        state=state,
                    )
                )
            except ValueError:  # a value outside today's range: not a trial of this study any more
                continue

    # ---------------------------------------------------------------- the study's trials as configs

    def _config(self, params: dict) -> TrialConfig:
        return self.sweep.template.replace(**params)

    def _trials(self, *states):
        from optuna.trial import TrialState

        wanted = states or (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        return self.study.get_trials(deepcopy=False, states=wanted) if self.study else []

    def _tell(self, number: int, loss: float | None) -> None:
        from optuna.trial import TrialState

        if loss is None:
            self.study.tell(number, state=TrialState.FAIL)
        elif math.isfinite(loss):
            self.study.tell(number, loss)
        else:  # diverged: counted, and ranked below every finite loss (never the best)
            self.study.tell(number, state=TrialState.PRUNED)

    def _settle_running(self) -> None:
        from optuna.trial import TrialState

        for trial in self._trials(TrialState.RUNNING):
            loss = self.done.get(self._config(trial.params).trial_id) if trial.params else None
            self._tell(trial.number, loss)

    def _counted(self) -> int:
        """Finished trials, each trial_id once: a suggestion of a point that already has a row is told
        that row (a duplicate in the study), which must not count twice. A study rebuilt from the rows
        after a killed driver (a deleted file, or one on object storage never uploaded) meets these."""
        from optuna.trial import TrialState

        finished = self._trials(TrialState.COMPLETE, TrialState.PRUNED)
        return len({self._config(t.params).trial_id if t.params else t.number for t in finished})

    # ---------------------------------------------------------------- Plan

    def take(self) -> TrialConfig | None:
        optuna = _optuna()
        for _ in range(1000):  # suggestions of finished trials are told and skipped, a bounded number
            if self._counted() + len(self.live) >= self.n_trials:
                return None
            asked = len(self.study.get_trials(deepcopy=False))
            seed = int(hashlib.sha256(f"{self.sampler_seed}:{asked}".encode()).hexdigest()[:8], 16)
            self.study.sampler = optuna.samplers.TPESampler(seed=seed)
            trial = self.study.ask(fixed_distributions=self.space)
            config = self._config(trial.params)
            if config.trial_id in self.done:
                self._tell(trial.number, self.done[config.trial_id])
                continue
            if config.trial_id in self.live:  # the same point twice at once: ask again
                self._tell(trial.number, None)
                continue
            self.live[config.trial_id] = trial.number
            return config
        return None

    def record(self, config: TrialConfig, status: str, loss: float | None) -> None:
        number = self.live.pop(config.trial_id, None)
        if number is None:
            return
        value = outcome(status, loss)
        if value is not None:
            self.done[config.trial_id] = value
        self._tell(number, value)

    @property
    def finished(self) -> bool:
        counted = self._counted() if self.study is not None else len(self.recorded)
        return not self.live and counted >= self.n_trials

    def planned(self) -> list[TrialConfig]:
        if self.study is None:  # read-only and the study file missing or damaged: its rows say
            configs = [self._config(params) for params, _ in self.recorded.values()]
        else:
            configs = [self._config(t.params) for t in self._trials() if t.params]
        return list({c.trial_id: c for c in configs}.values())

    def bounds(self) -> tuple[int, int]:
        return self.n_trials, self.n_trials

    def best(self) -> TrialConfig | None:
        """The finished trial with the lowest loss."""
        from optuna.trial import TrialState

        complete = self._trials(TrialState.COMPLETE)
        return self._config(min(complete, key=lambda t: t.value).params) if complete else None
