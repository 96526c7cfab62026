"""Connecting to Ray: a new local instance or a running cluster, checked before any compute starts."""

from __future__ import annotations

import logging
import os
import socket
import sys


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
        raise ClusterError(f"--address: nothing answers at {hostport} ({e.strerror or e}); start the cluster "
                           "(`ray start --head`) or pass its GCS address, e.g. HOST:6379") from None


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
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, **env)
    except Exception as e:  # noqa: BLE001 - any failure to reach Ray is the address's fault here
        raise ClusterError(f"--address: cannot connect to Ray at {address or 'a new local instance'}: "
                           f"{str(e).splitlines()[0]}; pass a running cluster's address (ray://, HOST:6379 "
                           "or auto)") from None


def concurrency(cpus_per_trial: float, limit: int | None = None) -> int:
    """Trials at once on the connected cluster, or on this machine when Ray is not up (never imports it)."""
    ray = sys.modules.get("ray")
    up = ray is not None and ray.is_initialized()
    cpus = ray.cluster_resources().get("CPU", 1) if up else (os.cpu_count() or 1)
    by_cpu = max(1, int(cpus // cpus_per_trial))
    return min(by_cpu, limit) if limit else by_cpu
