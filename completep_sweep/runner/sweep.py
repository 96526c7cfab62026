"""The Tune controller: pending trials in, one Parquet row per trial out.

The driver expands the sweep, drops trials that already have a row, and hands Tune a grid of the
pending ones. Workers only compute: each trial reports its evals as it goes (for ``status --watch``)
and its row and curve in one final report. A driver-side Tune callback (``Recorder``) writes them to
Parquet as they arrive, so the driver is the only writer, no shared filesystem is needed, and a
killed driver loses only the trials in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TextIO

import ray
from ray import tune

from ..fmt import describe, duration
from ..interrupt import Interrupted, deferred, interruptible, reap, requested
from ..search import Plan, make_plan
from ..store import ResultStore
from ..sweep import Sweep
from ..trial import TrialConfig, TrialResult
from .cluster import concurrency, connect
from .searcher import PlanSearcher

for _name in ("ray", "ray.tune", "ray.train"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class TrialSink(Protocol):
    """Told of each trial once its row is on disk (the MLflow tracker); must never block or raise."""

    def log_trial(self, row: dict, curve: list[dict]) -> None: ...


def run_trial_on_worker(param_space: dict) -> None:
    """Tune function trainable: train one trial and report its row and curve once."""
    from ..train import Runtime, train_trial

    config = TrialConfig(**param_space["trial"])
    gpus, cpus = param_space["gpus"], param_space["cpus"]
    # CPU-only trials say "cpu" explicitly so they never touch a GPU Ray did not give them.
    runtime = Runtime(device="cuda" if gpus > 0 else "cpu", threads=max(1, int(cpus)))

    def progress(point) -> None:  # shown by `status --watch`; the row is the final report below
        tune.report({"step": point.step, "val_loss": point.val_loss, "train_loss": point.train_loss})

    result = train_trial(config, on_eval=progress, runtime=runtime)
    result = dataclasses.replace(result, worker=ray.get_runtime_context().get_node_id())
    tune.report({"row": result.row(), "curve": [vars(p) for p in result.curve]})


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


class Recorder(tune.Callback):
    """Driver-side: the only writer of trial rows."""

    def __init__(self, store: ResultStore, progress: Progress, sink: TrialSink | None):
        self.store, self.progress, self.sink = store, progress, sink
        self.recorded: set[str] = set()  # results may arrive more than once; count each trial once
        self.live: dict[str, dict] = {}  # trial_id -> what `status --watch` shows while it runs

    def __getstate__(self):
        # Tune pickles the Tuner for its own restore, which we never use (rows on disk are the state);
        # the live stream and tracker thread cannot be pickled, so the copy carries none.
        return {"store": self.store, "progress": None, "sink": None, "recorded": set(), "live": {}}

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
        with deferred():  # a stop signal waits until the row is on disk and counted
            self.store.write_row(row, curve)
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
        with deferred():
            self.progress.finish("error", config.flops)
            self.store.write_result(TrialResult.failed(config, _error_text(trial)))
        self.progress.show(f"{describe(config)}: error")


def _outcome(row: dict) -> str:
    outcome = f"val {row['final_val_loss']:.4f}" if row["status"] == "ok" else row["status"]
    return f"{describe(row)}: {outcome}"


def _running(trials) -> int:
    return sum(t.status == "RUNNING" for t in trials)


def _error_text(trial) -> str:
    try:
        return str(trial.get_error())
    except Exception:  # the error object may not unpickle on the driver; the file has the text
        path = getattr(trial, "error_file", None)
        return open(path).read() if path and os.path.exists(path) else "trial failed (no error text)"


@dataclass(frozen=True)
class RunSummary:
    total: int
    skipped: int
    ran: int
    ok: int
    diverged: int
    errored: int
    wall_time_s: float
    concurrency: int = 0
    started_at: str = ""
    interrupted: str = ""
    """The signal that stopped the run (SIGINT, SIGTERM), or '' when every pending trial ran."""

    @property
    def exit_code(self) -> int:
        return 128 + signal.Signals[self.interrupted].value if self.interrupted else 0


def run_sweep(
    sweep: Sweep,
    store: ResultStore,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    sink: TrialSink | None = None,
    stream: TextIO | None = None,
    plan: Plan | None = None,
) -> RunSummary:
    """Run the trials of ``sweep`` that have no row in ``store`` yet, as its [search] plans them.

    ``plan``: the plan the caller built from the rows it loaded (built here when not given). The run
    record is written first (spec hash and ``sweep.resolved``, which readers of the folder reuse)
    and rewritten with the summary at the end, interrupted or not.
    """
    t0 = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    done = store.completed_ids()  # first: quarantines a row without its curve, so the plan runs it again
    plan = plan or make_plan(sweep, store.load(), store.root)
    record = {
        "started_at": started_at,
        "spec_hash": sweep.spec_hash,
        "resolved": sweep.resolved,
        "method": sweep.spec.search.method,
        "address": address or "local",
    }
    store.record_run(record)
    low, high = plan.bounds()
    known = plan.planned()
    pending = [c for c in known if c.trial_id not in done]
    res = sweep.spec.resources
    limit = max_concurrent or res.max_concurrent
    progress = Progress(
        total=low if low == high else None,
        done_before=len(known) - len(pending),
        flops_pending=sum(t.flops for t in pending),
        stream=stream or sys.stderr,
    )
    if plan.finished:
        summary = RunSummary(
            len(known), progress.done_before, 0, 0, 0, 0, time.monotonic() - t0, 0, started_at
        )
        store.record_run({**record, **asdict(summary), "finished_at": started_at})
        return summary
    connect(address)
    trainable = tune.with_resources(
        run_trial_on_worker, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
    )
    scratch = tempfile.mkdtemp(prefix="completep-tune-")
    stopped = None
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"cpus": res.cpus_per_trial, "gpus": res.gpus_per_trial},  # the trial: from the plan
            tune_config=tune.TuneConfig(
                search_alg=PlanSearcher(plan),
                num_samples=-1,
                max_concurrent_trials=limit,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=f"completep-{sweep.name}",
                storage_path=scratch,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=res.max_retries),
                callbacks=[Recorder(store, progress, sink)],
                stop=_StopOnSignal(),
            ),
        )
        with interruptible(), deferred():  # a stop signal ends the experiment via _StopOnSignal
            tuner.fit()
    except Interrupted as e:
        stopped = e.name
        _stop_ray(local=address is None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        store.live_path.unlink(missing_ok=True)
    if progress.stream.isatty():
        progress.stream.write("\n")
    ran = progress.ok + progress.diverged + progress.errored
    total = len(plan.planned())
    summary = RunSummary(
        total,
        progress.done_before,
        ran,
        progress.ok,
        progress.diverged,
        progress.errored,
        time.monotonic() - t0,
        concurrency(res.cpus_per_trial, limit),
        started_at,
        stopped or "",
    )
    store.record_run(
        {**record, **asdict(summary), "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    )
    return summary


class _StopOnSignal(tune.Stopper):
    """Ends the whole experiment at Tune's next step once Ctrl-C or SIGTERM has arrived."""

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return requested()


def _stop_ray(*, local: bool) -> None:
    """After a stop signal: end the trials in flight; a Ray this process started goes with them."""
    ray.shutdown()
    if local:
        reap()


def _trial_name(trial) -> str:
    c = trial.config["trial"]
    return f"{c['parameterization']}_w{c['width']}_d{c['depth']}_{trial.trial_id}"
