"""Connecting to Ray: a new local instance or a running cluster, checked before any compute starts."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time


class ClusterError(ValueError):
    """A Ray address or resource request that cannot work; the message names the option and the fix."""


RUN_HINT = "start the cluster (`ray start --head`) or pass its GCS address, e.g. HOST:6379"


def check_address(address: str | None, hint: str = RUN_HINT) -> None:
    """Refuse an unreachable HOST:PORT at once: Ray itself retries a dead address indefinitely.
    ``hint``: what to do about it (run wants the GCS address; submit the dashboard's)."""
    if not address or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address: {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ClusterError(f"--address: nothing answers at {hostport} ({e.strerror or e}); {hint}") from None


def connect(address: str | None) -> None:
    """Connect to ``address`` (a running cluster, or 'auto'), or start Ray in this process.

    Raises ClusterError naming --address when Ray cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return
    check_address(address)
    env = {"runtime_env": {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}}
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **env)
        else:
            # "local" always starts a fresh instance: a plain ray.init() would attach to whatever
            # cluster /tmp/ray/ray_current_cluster names, even a dead one.
            ray.init(
                address="local",
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                **env,
            )
    except Exception as e:  # noqa: BLE001 - any failure to reach Ray is the address's fault here
        raise ClusterError(
            f"--address: cannot connect to Ray at {address or 'a new local instance'}: "
            f"{str(e).splitlines()[0]}; pass a running cluster's address (ray://, HOST:6379 "
            "or auto)"
        ) from None


def concurrency(
    cpus_per_trial: float, limit: int | None = None, *, gpus_per_trial: float = 0.0, workers: int = 1
) -> int:
    """Trials at once on the connected cluster, or on this machine when Ray is not up (never imports it).

    A trial of several ``workers`` (a Train job) counts all of them: its Tune trial reserves nothing
    itself, so this number is what keeps Tune from starting trials whose workers cannot run.
    """
    ray = sys.modules.get("ray")
    up = ray is not None and ray.is_initialized()
    total = ray.cluster_resources() if up else {"CPU": os.cpu_count() or 1}
    by_cpu = max(1, int(total.get("CPU", 1) // (cpus_per_trial * workers)))
    if workers > 1 and gpus_per_trial > 0 and "GPU" in total:
        by_cpu = min(by_cpu, max(1, int(total["GPU"] // (gpus_per_trial * workers))))
    return min(by_cpu, limit) if limit else by_cpu


def check_workers(resources, trials) -> None:
    """What no cluster could run with ``resources.workers_per_trial`` > 1, checked before any compute.

    ``resources``: the sweep file's [resources]; ``trials``: TrialConfigs (their batch sizes).
    Raises ClusterError naming workers_per_trial (or micro_batch_size) and the fix.
    """
    n, trials = resources.workers_per_trial, [t for t in trials if t is not None]
    if n == 1:
        return
    head = f"resources.workers_per_trial = {n}"
    if any(t.trainer or t.command for t in trials):
        raise ClusterError(
            f"{head}: a trainer of your own (trainer or command) runs as one process per trial; "
            "set workers_per_trial = 1"
        )
    if resources.gpus_per_trial not in (0, 1):
        raise ClusterError(
            f"{head} with gpus_per_trial = {resources.gpus_per_trial:g}: each worker drives exactly "
            "one GPU (NCCL cannot put two ranks on one); set gpus_per_trial = 1 (or 0 on CPUs)"
        )
    for batch, micro in sorted({(t.batch_size, t.micro_batch_size) for t in trials}):
        if batch % n:
            raise ClusterError(
                f"{head} does not divide batch_size {batch} (each worker takes an equal slice of the "
                f"batch); use a workers_per_trial that divides it, or a multiple of {n} as batch_size"
            )
        if micro not in (0, batch) and (batch // n) % micro:
            raise ClusterError(
                f"train.micro_batch_size = {micro} does not divide the {batch // n} sequences each of "
                f"the {head} workers computes (batch_size {batch}); use a divisor of {batch // n}"
            )


def check_local_cpus(cpus_per_trial: float, workers: int = 1) -> None:
    """Before Ray starts here: one trial, all its workers at once, must fit this machine."""
    have = os.cpu_count() or 1
    if cpus_per_trial > have:
        raise ClusterError(
            f"resources.cpus_per_trial = {cpus_per_trial:g}: this machine has {have} CPU(s), so no "
            f"trial could ever start; set cpus_per_trial <= {have}, or run on a cluster (--address)"
        )
    if cpus_per_trial * workers > have:
        raise ClusterError(
            f"resources.workers_per_trial = {workers}: {workers} workers x {cpus_per_trial:g} CPU "
            f"(cpus_per_trial) do not fit this machine's {have} CPU(s), and a trial's workers all run "
            f"at once; set workers_per_trial <= {int(have // cpus_per_trial)}, or run on a cluster "
            "(--address)"
        )


def check_resources(
    cpus_per_trial: float,
    gpus_per_trial: float,
    *,
    workers: int = 1,
    wait_s: float = 0.0,
    stream=sys.stderr,
) -> None:
    """After ``connect``: the live nodes must fit one trial (all its ``workers`` at once), else Tune
    (or Train, waiting for its workers' placement group) would wait forever.

    ``wait_s`` > 0 (an autoscaling cluster): warn once and wait that long for such nodes to join.
    Raises ClusterError naming the resource field and the fix.
    """
    import ray

    deadline, warned = time.monotonic() + wait_s, False
    while True:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        if sum(_workers_fitting(n, cpus_per_trial, gpus_per_trial) for n in nodes) >= workers:
            return
        if time.monotonic() >= deadline:
            break
        if not warned:
            what = f"{workers} workers of " if workers > 1 else ""
            stream.write(
                f"warning: no node fits a trial ({what}{cpus_per_trial:g} CPU, {gpus_per_trial:g} GPU) "
                f"yet; waiting up to {wait_s:g} s for the autoscaler (resources.autoscale_wait_s)\n"
            )
            warned = True
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    most_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    most_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    where = "this machine" if len(nodes) == 1 else f"any of the {len(nodes)} nodes"
    if gpus_per_trial > most_gpu:
        raise ClusterError(
            f"resources.gpus_per_trial = {gpus_per_trial:g}: {where} has at most {most_gpu:g} GPU(s); "
            "set gpus_per_trial = 0 to train on CPUs, or run on a GPU cluster (run --address or "
            "submit)"
        )
    fit = sum(_workers_fitting(n, cpus_per_trial, gpus_per_trial) for n in nodes)
    if fit:  # one worker fits, all of them do not
        raise ClusterError(
            f"resources.workers_per_trial = {workers}: the {len(nodes)} node(s) hold at most {fit} "
            f"workers of {cpus_per_trial:g} CPU, {gpus_per_trial:g} GPU, and a trial's workers all run "
            f"at once; set workers_per_trial <= {fit}"
            + ("" if wait_s else ", or, on an autoscaling cluster, resources.autoscale_wait_s = 600")
        )
    raise ClusterError(
        f"resources.cpus_per_trial = {cpus_per_trial:g}: {where} has at most {most_cpu:g} CPU(s) "
        f"{'with the GPUs asked for ' if gpus_per_trial else ''}; set cpus_per_trial <= {most_cpu:g}"
        + ("" if wait_s else ", or, on an autoscaling cluster, resources.autoscale_wait_s = 600")
    )


def _workers_fitting(node: dict, cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` and ``gpus`` each one node's resources hold."""
    by_cpu = int(node.get("CPU", 0) // cpus)
    return min(by_cpu, int(node.get("GPU", 0) // gpus)) if gpus > 0 else by_cpu
