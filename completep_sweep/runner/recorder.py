"""Driver-side bookkeeping of a run: the progress line, and the ``Recorder`` that writes each
trial's row as its result arrives (the driver is the only writer), and ``WriteFailure``: when the
results folder stops taking rows (a full disk), the run stops cleanly instead of losing them."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from ray import tune

from ..fmt import describe, duration
from ..interrupt import deferred, requested
from ..memory import with_trial_size
from ..store import ResultStore
from ..trial import TrialConfig, TrialResult


class TrialSink(Protocol):
    """Told of each trial once its row is on disk (the MLflow tracker); must never block or raise."""

    def log_trial(self, row: dict, curve: list[dict]) -> None: ...


@dataclass
class Progress:
    """Counts for the live progress line; the ETA weighs trials by their FLOPs (deep ones cost more)."""

    total: int | None
    """Trials in all, when known up front (a grid); an adaptive search plans as it goes."""
    done_before: int
    flops_pending: float
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    ok: int = 0
    diverged: int = 0
    errored: int = 0
    running: int = 0
    flops_done: float = 0.0
    started: float = field(default_factory=time.monotonic)
    first_trial: float | None = None  # the ETA's clock: Ray's start-up is not throughput

    def finish(self, status: str, flops: float) -> None:
        self.ok += status == "ok"
        self.diverged += status == "diverged"
        self.errored += status == "error"
        self.flops_done += flops

    def line(self, last: str = "") -> str:
        done = self.done_before + self.ok + self.diverged + self.errored
        elapsed = time.monotonic() - self.started
        left = self.flops_pending - self.flops_done
        working = time.monotonic() - (self.first_trial or self.started)
        known = self.total is not None
        eta = (
            duration(working * left / self.flops_done)
            if known and self.flops_done and done < self.total
            else "-"
        )
        text = (
            f"[{done}/{self.total if known else '?'}] {self.ok} ok, {self.diverged} diverged, "
            f"{self.errored} error, {self.running} running | {duration(elapsed)} elapsed"
            + (f", ETA {eta}" if known else "")
        )
        return f"{text} | {last}" if last else text

    def show(self, last: str = "") -> None:
        if self.stream.isatty():
            self.stream.write("\r\033[K" + self.line(last))
        else:
            self.stream.write(self.line(last) + "\n")
        self.stream.flush()


class WriteFailure:
    """Why the results folder stopped taking rows (a full disk, a folder gone read-only), or ''.
    Set by the Recorder; the stopper ends the experiment at Tune's next step once it is set."""

    reason: str = ""

    def set(self, e: OSError, what: Path) -> None:
        self.reason = self.reason or f"cannot write {e.filename or what}: {e.strerror or e}"


class Recorder(tune.Callback):
    """Driver-side: the only writer of trial rows."""

    def __init__(
        self,
        store: ResultStore,
        progress: Progress,
        sink: TrialSink | None,
        failure: WriteFailure | None = None,
    ):
        self.store, self.progress, self.sink = store, progress, sink
        self.failure = failure or WriteFailure()
        self.recorded: set[str] = set()  # results may arrive more than once; count each trial once
        self.live: dict[str, dict] = {}  # trial_id -> what `status --watch` shows while it runs

    def __getstate__(self):
        # Tune pickles the Tuner for its own restore, which we never use (rows on disk are the state);
        # the live stream and tracker thread cannot be pickled, so the copy carries none.
        return {
            "store": self.store,
            "progress": None,
            "sink": None,
            "recorded": set(),
            "live": {},
            "failure": WriteFailure(),
        }

    def _live(self, trial, **update) -> None:
        trial_id = trial.trial_id  # Tune's id: the key only lives as long as this driver
        if update.get("done"):
            self.live.pop(trial_id, None)
        else:
            entry = self.live.setdefault(
                trial_id,
                {
                    "trial": describe(trial.config["trial"]),
                    "started": time.time(),
                    "step": 0,
                    "steps": trial.config["trial"]["steps"],
                },
            )
            entry.update(update)
        try:
            self.store.write_live(self.live)
        except OSError:
            pass  # the live view is a convenience; never let it stop a sweep

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.first_trial = self.progress.first_trial or time.monotonic()
        self.progress.running = _running(trials)
        self._live(trial)
        if self.progress.stream.isatty():
            self.progress.show()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "row" not in result:
            if "step" in result:
                self._live(trial, step=result["step"], val_loss=result["val_loss"])
            return
        row, curve = result["row"], result["curve"]
        if self.failure.reason:
            return  # the folder takes no rows: this trial runs again on resume
        with deferred():  # a stop signal waits until the row is on disk and counted
            try:
                self.store.write_row(row, curve)
            except OSError as e:  # the trial counts as not run; the run stops (see WriteFailure)
                self.failure.set(e, self.store.trials_dir)
                return
            if row["trial_id"] in self.recorded:
                return
            self.recorded.add(row["trial_id"])
            self.progress.finish(row["status"], TrialConfig(**trial.config["trial"]).flops)
            if self.sink is not None:
                self.sink.log_trial(row, curve)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.progress.running = _running(trials)
        self._live(trial, done=True)
        row = (trial.last_result or {}).get("row")
        self.progress.show(_outcome(row) if row else "")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.running = _running(trials)
        self._live(trial, done=True)
        if requested():
            return  # stopped by the user (Ctrl-C reaches the workers too): not an error of the trial
        config = TrialConfig(**trial.config["trial"])
        if self.failure.reason:
            return
        with deferred():
            try:
                # Its last line (what `status` shows) names the trial's size: an OOM depends on it.
                text = with_trial_size(_error_text(trial), config)
                self.store.write_result(TrialResult.failed(config, text))
            except OSError as e:
                self.failure.set(e, self.store.errors_dir)
                return
            self.progress.finish("error", config.flops)
        self.progress.show(f"{describe(config)}: error")


def _outcome(row: dict) -> str:
    outcome = f"val {row['final_val_loss']:.4f}" if row["status"] == "ok" else row["status"]
    return f"{describe(row)}: {outcome}"


def _running(trials) -> int:
    return sum(t.status == "RUNNING" for t in trials)


def _error_text(trial) -> str:
    try:
        error = trial.get_error()
    except Exception:  # the error object may not unpickle on the driver; the file has the text
        error = None
    if error:
        return str(error)
    # Tune reads the error from its storage copy, which may not hold it yet when this callback runs;
    # the trial's local error file is written before the callback.
    path = getattr(trial, "error_file", None)
    return open(path).read() if path and os.path.exists(path) else "trial failed (no error text)"
