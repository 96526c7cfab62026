"""The Tune controller: pending trials in, one Parquet row per trial out.

The driver expands the sweep, drops trials that already have a row, and hands Tune a grid of the
pending ones. Workers only compute: each trial reports its evals as it goes (for ``status --watch``)
and its row and curve in one final report. A driver-side Tune callback (``Recorder``) writes them to
Parquet as they arrive, so the driver is the only writer, no shared filesystem is needed, and a
killed driver loses only the trials in flight. A trial of several workers (``workers_per_trial``)
runs as a Ray Train job inside its Tune trial and reports the same way (data_parallel.py).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TextIO

import ray
from ray import tune

from ..interrupt import Interrupted, deferred, interruptible, reap, requested
from ..search import Plan, make_plan
from ..store import ResultStore
from ..sweep import Sweep
from ..trial import TrialConfig
from .cluster import concurrency, connect
from .recorder import Progress, Recorder, TrialSink, WriteFailure  # noqa: F401 - TrialSink: re-exported
from .searcher import PlanSearcher

for _name in ("ray", "ray.tune", "ray.train"):
    logging.getLogger(_name).setLevel(logging.ERROR)


def run_trial_on_worker(param_space: dict) -> None:
    """Tune function trainable: train one trial and report its row and curve once."""
    config = TrialConfig(**param_space["trial"])
    gpus, cpus = param_space["gpus"], param_space["cpus"]
    # CPU-only trials say "cpu" explicitly so they never touch a GPU Ray did not give them.
    device, threads = "cuda" if gpus > 0 else "cpu", max(1, int(cpus))

    def progress(point) -> None:  # shown by `status --watch`; the row is the final report below
        tune.report({"step": point.step, "val_loss": point.val_loss, "train_loss": point.train_loss})

    if config.trainer or config.command:  # the user's code; its failure raises, so it is retried
        from ..user_trainer import run_user_trial

        paths = param_space.get("trainer", {}).get("path", [])
        result = run_user_trial(config, progress, device=device, threads=threads, paths=paths)
    else:  # imported here: a user's trainer may not use torch at all
        from ..train import Runtime, train_trial

        result = train_trial(config, on_eval=progress, runtime=Runtime(device=device, threads=threads))
    result = dataclasses.replace(result, worker=ray.get_runtime_context().get_node_id())
    tune.report({"row": result.row(), "curve": [vars(p) for p in result.curve]})


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
    failed: str = ""
    """Why the results folder stopped taking rows (WriteFailure), or ''."""

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
    plan = plan or make_plan(sweep, store.load(), store.root, folder=store.folder)
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
    workers = res.workers_per_trial
    at_once = concurrency(res.cpus_per_trial, limit, gpus_per_trial=res.gpus_per_trial, workers=workers)
    if workers > 1:  # each trial a Ray Train job (data_parallel.py); its workers' devices cap trials at once
        from .data_parallel import TRIAL_RESOURCES, run_trial_on_workers

        trainable, limit = tune.with_resources(run_trial_on_workers, TRIAL_RESOURCES), at_once
    else:
        trainable = tune.with_resources(
            run_trial_on_worker, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial}
        )
    scratch = tempfile.mkdtemp(prefix="completep-tune-")
    stopped = None
    failure = WriteFailure()
    try:
        tuner = tune.Tuner(
            trainable,
            # The trial comes from the plan; a user trainer's import paths from the driver (user_trainer.py).
            param_space={
                "cpus": res.cpus_per_trial,
                "gpus": res.gpus_per_trial,
                "workers": workers,
                # A Ray started here has no dashboard: Train jobs record their groups (data_parallel._Ledger).
                "ledger": f"{scratch}/placement" if address is None else "",
                "trainer": sweep.resolved.get("trainer", {}),
            },
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
                callbacks=[Recorder(store, progress, sink, failure)],
                stop=_StopOnSignal(failure),
            ),
        )
        with interruptible(), deferred():  # a stop signal ends the experiment via _StopOnSignal
            tuner.fit()
    except Interrupted as e:
        stopped = e.name
        _stop_ray(local=address is None)
    except Exception as e:  # Tune wraps what failed; a write that failed is ours to report
        cause = _os_error(e)
        if cause is None and not failure.reason:
            raise
        if cause is not None:
            failure.set(cause, store.root)
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
        at_once,
        started_at,
        stopped or "",
        failure.reason,
    )
    try:
        store.record_run(
            {**record, **asdict(summary), "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
    except OSError as e:  # the record is a log; the rows are the results
        sys.stderr.write(f"warning: run record not written ({e.strerror or e})\n")
    return summary


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind a Tune error (a full disk under its own files, or under ours), if any."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


class _StopOnSignal(tune.Stopper):
    """Ends the whole experiment at Tune's next step once Ctrl-C or SIGTERM has arrived, or once
    the results folder stopped taking rows."""

    def __init__(self, failure: WriteFailure | None = None):
        self.failure = failure or WriteFailure()

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        return requested() or bool(self.failure.reason)


def _stop_ray(*, local: bool) -> None:
    """After a stop signal: end the trials in flight; a Ray this process started goes with them."""
    ray.shutdown()
    if local:
        reap()


def _trial_name(trial) -> str:
    c = trial.config["trial"]
    return f"{c['parameterization']}_w{c['width']}_d{c['depth']}_{trial.trial_id}"
