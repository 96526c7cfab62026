"""Trials larger than one device: a Tune trial that runs its training as a Ray Train job.

With ``[resources] workers_per_trial = N`` > 1 the Tune trial (``run_trial_on_workers``) builds a
``TorchTrainer`` of N workers, each with ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (gloo
on CPUs, nccl on GPUs), and waits for it. Every worker runs ``train_trial`` on its rank's slice of
each batch (train.py: DDP, losses averaged over the ranks); rank 0's reports, the evaluations as they
come and then the row and curve once, reach the Tune trial through Train's ``TuneReportCallback``, so
the driver's Recorder sees exactly what a one-process trial reports and stays the only writer.

- Retries: Train never retries (``max_failures=0``). A worker that dies or raises fails ``fit()``,
  which fails the Tune trial, which Tune runs again from the start under ``[resources] max_retries``,
  like any trial; its error row, after the last retry, carries Train's error text.
- Placement: Train gangs the N workers in one placement group and waits, retrying its start without
  limit, until they all fit. The Tune trial itself holds no CPU or GPU (see ``TRIAL_RESOURCES``), so
  the driver caps trials at once by the cluster's devices (``cluster.concurrency``). Ray keeps a
  group until its creator, Train's controller, and the whole job are gone; where Train's own
  cleaner cannot run (a local Ray: ``_Trainer``), ``_Ledger`` removes the group of a controller that
  died with its Tune trial's process, before the next job starts, so a retry never waits forever.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import ray
import ray.train
import ray.train.torch
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from ..trial import TrialConfig

TRIAL_RESOURCES = {"memory": 1}
"""What the Tune trial of a Train job reserves: one byte, because Tune refuses an empty request and
any CPU held here would be missing from the workers' placement group (2 workers x 1 CPU on a 2-CPU
machine would never start)."""
HEALTH_CHECK_S = "0.5"
"""Train hands a worker's report on when its controller next polls the workers (every 2 s by
default), and a worker blocks on its next report until then; polling faster keeps evaluations from
stalling a short trial and finds a dead worker sooner."""


def run_trial_on_workers(param_space: dict) -> None:
    """Tune function trainable of a multi-worker trial: one Train job, reported through to Tune."""
    storage = tempfile.mkdtemp(prefix="completep-train-")  # Train's run folder; rows go to the driver
    try:
        build_trainer(
            param_space["trial"],
            workers=param_space["workers"],
            cpus=param_space["cpus"],
            gpus=param_space["gpus"],
            storage=storage,
            ledger=param_space.get("ledger", ""),
            callbacks=[TuneReportCallback()],
        ).fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def build_trainer(
    trial: dict, *, workers: int, cpus: float, gpus: float, storage: str, ledger: str = "", callbacks=()
) -> TorchTrainer:
    """The Train job of one trial (``trial``: a TrialConfig's fields); ``fit()`` runs it and raises
    when a worker died or raised. ``ledger``: a folder of this machine when Ray was started by this
    driver (no dashboard), where the jobs' placement groups are recorded (``_Ledger``)."""
    # fit() hands these to Train's controller. A Ray of this machine alone is never drained or
    # preempted: the preemption watcher would only cost each trial one more process.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_S)
    if ledger:
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        callbacks = [*callbacks, _Ledger(ledger)]
    per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
    trainer = _Trainer(
        _train_worker,
        train_loop_config={"trial": trial, "cpus": cpus, "gpus": gpus},
        torch_config=TorchConfig(backend="nccl" if gpus > 0 else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=workers, use_gpu=gpus > 0, resources_per_worker=per_worker
        ),
        run_config=ray.train.RunConfig(
            name="trial",
            storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries the whole trial
            callbacks=list(callbacks),
        ),
    )
    trainer.watch_placement = not ledger
    return trainer


def _train_worker(loop_config: dict) -> None:
    """One rank of the job: its slice of every batch. Every rank reports as often (Train's reports
    are a barrier); only rank 0's reports reach Tune, so the others send nothing."""
    from ..train import Runtime, train_trial  # imported here: the driver never needs torch's trainer

    config = TrialConfig(**loop_config["trial"])
    rank = ray.train.get_context().get_world_rank()
    gpus, cpus = loop_config["gpus"], loop_config["cpus"]
    # Train gives each worker its own GPU (CUDA_VISIBLE_DEVICES); CPU workers never touch one.
    device = str(ray.train.torch.get_device()) if gpus > 0 else "cpu"

    def progress(point) -> None:  # shown by `status --watch`; the row is the final report below
        metrics = {"step": point.step, "val_loss": point.val_loss, "train_loss": point.train_loss}
        ray.train.report(metrics if rank == 0 else {})

    runtime = Runtime(device=device, threads=max(1, int(cpus)), distributed=True)
    result = train_trial(config, on_eval=progress, runtime=runtime)
    result = dataclasses.replace(result, worker=ray.get_runtime_context().get_node_id())
    ray.train.report({"row": result.row(), "curve": [vars(p) for p in result.curve]} if rank == 0 else {})


class _Trainer(TorchTrainer):
    """TorchTrainer without Train's placement-group cleaner where Ray has no dashboard.

    The cleaner, a detached actor, asks the state API (served by the dashboard) whether the
    controller lives. Without a dashboard the answer may come from another Ray on the machine and
    take a live controller for dead (removing the workers' group mid-trial), and stopping it costs
    each trial up to 12 s. ``_Ledger`` does its job there instead.
    """

    watch_placement = True

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        if self.watch_placement:
            return callbacks
        return [c for c in callbacks if type(c).__name__ != "PlacementGroupCleanerCallback"]


class _Ledger(WorkerGroupCallback):
    """The placement groups of a local Ray's Train jobs, one empty file each, named by the pid of
    the controller that created it and the group's id; the controller deletes its files once its
    workers are gone. A file whose controller is dead names a group nobody will remove (the Tune
    trial's process was killed, and the controller with it): every job, before it asks for its own
    group (on each of its tries), removes those."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def before_worker_group_start(self, worker_group_context) -> None:
        for entry in self.folder.glob("*-*"):
            pid, group = entry.name.split("-", 1)
            if _alive(int(pid)):
                continue  # its controller removes the group itself
            try:
                remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group))))
            except Exception:  # noqa: BLE001 - already gone: nothing to free
                pass
            entry.unlink(missing_ok=True)

    def after_worker_group_start(self, worker_group) -> None:
        group = worker_group.get_worker_group_state().placement_group_handle.placement_group
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{os.getpid()}-{group.id.hex()}").touch()

    def after_worker_group_shutdown(self, worker_group_context) -> None:
        for entry in self.folder.glob(f"{os.getpid()}-*"):
            entry.unlink(missing_ok=True)

    after_worker_group_abort = after_worker_group_shutdown


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        pass
    return True
