"""Cluster behaviour (slow): multi-node placement and Ray Job submission, all on 127.0.0.1."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from completep_sweep.store import ResultStore
from completep_sweep.sweep import load_sweep

pytestmark = pytest.mark.slow


def test_trials_spread_over_nodes(make_spec, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from completep_sweep.runner.sweep import run_sweep

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        sweep = load_sweep(make_spec("multinode", depths=[2, 4], lrs=[2**-7, 2**-6], steps=40))
        store = ResultStore(tmp_path / "multinode")
        summary = run_sweep(sweep, store, address=cluster.address)
        df = store.load()
        assert summary.ok == 8 and len(df) == 8
        node_ids = {n.node_id for n in nodes}
        assert set(df.worker) == node_ids  # the head has no CPUs: every trial ran on a worker node, both used
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_submit_runs_the_sweep_as_a_ray_job(make_spec, tmp_path, free_port):
    bin_dir = Path(sys.executable).parent
    gcs, dashboard = free_port(), free_port()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    head = subprocess.Popen(
        [
            str(bin_dir / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={gcs}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--num-cpus=2",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=(tmp_path / "head.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    results = tmp_path / "cluster-results"
    spec = make_spec("submitted", parameterizations=["completep"], depths=[2], lrs=[2**-7, 2**-6], steps=20)
    cli = [
        sys.executable,
        "-m",
        "completep_sweep.cli",
        "submit",
        str(spec),
        "--address",
        address,
        "--results",
        str(results),
    ]
    try:
        _wait_http(f"{address}/api/version", 120)
        first = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=120)
        assert first.returncode == 0, first.stderr[-3000:]
        job_id = first.stdout.split(":")[0]
        assert job_id.startswith("completep-submitted-") and "submitted" in first.stdout
        again = subprocess.run([*cli, "--wait"], capture_output=True, text=True, env=env, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]  # the job succeeded
        assert again.stdout.split(":")[0] == job_id and "already submitted" in again.stdout  # no second job
        assert f"{job_id}: SUCCEEDED" in again.stdout
        df = ResultStore(results / "submitted").load()
        assert len(df) == 2 and set(df.status) == {"ok"}
    finally:
        os.killpg(head.pid, 9)
        head.wait(30)


def _wait_http(url: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            opener.open(url, timeout=2).read()
            return
        except urllib.error.HTTPError:
            return  # it answers (401 under Ray's token auth): the server is up
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")
