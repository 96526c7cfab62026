"""Connecting to Ray: a new local instance or a running cluster, checked before any compute starts."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time


class ClusterError(ValueError):
    """A Ray address or resource request that cannot work; the message names the option and the fix."""


def check_address(address: str | None) -> None:
    """Refuse an unreachable HOST:PORT at once: Ray itself retries a dead address indefinitely."""
    if not address or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address: {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ClusterError(
            f"--address: nothing answers at {hostport} ({e.strerror or e}); start the cluster "
            "(`ray start --head`) or pass its GCS address, e.g. HOST:6379"
        ) from None


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


def concurrency(cpus_per_trial: float, limit: int | None = None) -> int:
    """Trials at once on the connected cluster, or on this machine when Ray is not up (never imports it)."""
    ray = sys.modules.get("ray")
    up = ray is not None and ray.is_initialized()
    cpus = ray.cluster_resources().get("CPU", 1) if up else (os.cpu_count() or 1)
    by_cpu = max(1, int(cpus // cpus_per_trial))
    return min(by_cpu, limit) if limit else by_cpu


def check_local_cpus(cpus_per_trial: float) -> None:
    """Before Ray starts here: one trial must fit this machine."""
    have = os.cpu_count() or 1
    if cpus_per_trial > have:
        raise ClusterError(
            f"resources.cpus_per_trial = {cpus_per_trial:g}: this machine has {have} CPU(s), so no "
            f"trial could ever start; set cpus_per_trial <= {have}, or run on a cluster (--address)"
        )


def check_resources(
    cpus_per_trial: float, gpus_per_trial: float, *, wait_s: float = 0.0, stream=sys.stderr
) -> None:
    """After ``connect``: some live node must fit one trial, else Tune would wait forever.

    ``wait_s`` > 0 (an autoscaling cluster): warn once and wait that long for such a node to join.
    Raises ClusterError naming the resource field and the fix.
    """
    import ray

    deadline, warned = time.monotonic() + wait_s, False
    while True:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        if any(n.get("CPU", 0) >= cpus_per_trial and n.get("GPU", 0) >= gpus_per_trial for n in nodes):
            return
        if time.monotonic() >= deadline:
            break
        if not warned:
            stream.write(
                f"warning: no node fits a trial ({cpus_per_trial:g} CPU, {gpus_per_trial:g} GPU) yet; "
                f"waiting up to {wait_s:g} s for the autoscaler (resources.autoscale_wait_s)\n"
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
    raise ClusterError(
        f"resources.cpus_per_trial = {cpus_per_trial:g}: {where} has at most {most_cpu:g} CPU(s) "
        f"{'with the GPUs asked for ' if gpus_per_trial else ''}; set cpus_per_trial <= {most_cpu:g}"
        + ("" if wait_s else ", or, on an autoscaling cluster, resources.autoscale_wait_s = 600")
    )
