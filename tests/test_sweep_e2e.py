"""End-to-end sweeps on local Ray (slow): rows, resume, grid extension, divergence, kills."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from completep_sweep.cli import main
from completep_sweep.store import ResultStore

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "completep_sweep.cli"]


@pytest.fixture(scope="module", autouse=True)
def _ray_down_after():
    yield
    import ray

    ray.shutdown()


def mtimes(store: ResultStore) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in store.trials_dir.glob("*.parquet")}


def test_sweep_rows_rerun_extend_and_divergence(make_spec, tmp_path, capsys):
    results = tmp_path / "results"
    spec = make_spec("grid", lrs=[2**-7, 64.0])
    assert main(["run", str(spec), "--results", str(results), "--no-mlflow"]) == 0
    store = ResultStore(results / "grid")
    df = store.load()
    assert len(df) == 8 and df.trial_id.is_unique and len(list(store.trials_dir.glob("*.parquet"))) == 8
    assert set(df[df.lr == 64.0].status) == {"diverged"}
    assert set(df[df.lr != 64.0].status) == {"ok"}
    assert df[df.status == "ok"].final_val_loss.lt(5.6).all()
    assert (store.root / "spec.toml").read_text() == spec.read_text()
    assert len(list(store.curves_dir.glob("*.parquet"))) == 8  # diverged trials have (empty) curves too
    assert set(store.load_curves().trial_id) == set(df[df.status == "ok"].trial_id)
    before = mtimes(store)

    capsys.readouterr()
    assert main(["run", str(spec), "--results", str(results), "--no-mlflow"]) == 0  # nothing to do
    assert "0 ran" in capsys.readouterr().out
    assert mtimes(store) == before

    spec.write_text(spec.read_text().replace("lr = [0.0078125, 64.0]", "lr = [0.0078125, 64.0, 0.015625]"))
    assert main(["run", str(spec), "--results", str(results), "--no-mlflow"]) == 0
    after = mtimes(store)
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())  # old rows untouched
    assert "4 ran" in capsys.readouterr().out

    assert main(["status", "grid", "--results", str(results)]) == 0
    assert "8 ok, 4 diverged, 0 error; 0 pending of 12" in capsys.readouterr().out


def _start_driver(spec: Path, results: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "run", str(spec), "--results", str(results), "--no-mlflow"],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(predicate, timeout: float, what: str, explain=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{explain()}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver's session: its Ray helpers too
    except ProcessLookupError:
        pass


def test_killed_driver_then_same_command_completes(make_spec, tmp_path):
    results = tmp_path / "results"
    spec = make_spec("killed", depths=[2, 4], lrs=[2**-8, 2**-7, 2**-6], steps=120)
    store = ResultStore(results / "killed")
    proc = _start_driver(spec, results, tmp_path / "first.log")
    try:
        _wait_for(lambda: len(store.completed_ids()) >= 2, 240, "two rows")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        _kill_group(proc)
    first = store.completed_ids()
    assert 2 <= len(first) < 12, "the kill should land mid-sweep"
    first_mtimes = mtimes(store)
    rerun = subprocess.run([*CLI, "run", str(spec), "--results", str(results), "--no-mlflow"],
                           capture_output=True, text=True, timeout=600, start_new_session=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    df = store.load()
    assert len(df) == 12 and df.trial_id.is_unique and set(df.status) == {"ok"}
    assert all(mtimes(store)[k] == v for k, v in first_mtimes.items())  # finished rows were not redone
    curves = store.load_curves()
    assert not curves.duplicated(["trial_id", "step"]).any() and curves.trial_id.nunique() == 12
    assert f"{12 - len(first)} ran" in rerun.stdout


def _process_table() -> dict[int, tuple[int, str]]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            table[int(parts[0])] = (int(parts[1]), parts[2])
    return table


def _descendants(root: int) -> list[tuple[int, str]]:
    table = _process_table()
    found, frontier = [], {root}
    while frontier:
        children = [(pid, args) for pid, (ppid, args) in table.items() if ppid in frontier]
        found += children
        frontier = {pid for pid, _ in children}
    return found


def _trial_worker(driver: subprocess.Popen, log: Path) -> int | None:
    """The pid of a Tune trial actor under this driver (whatever Ray's process tree looks like)."""
    if driver.poll() is not None:
        raise AssertionError(f"the driver exited ({driver.returncode}) before a trial worker was seen:\n"
                             + log.read_text()[-3000:])
    for pid, args in _descendants(driver.pid):
        if args.startswith("ray::ImplicitFunc"):  # "ray::ImplicitFunc.train" while it runs a trial
            return pid
    return None


def test_worker_killed_mid_trial_is_retried(make_spec, tmp_path):
    results = tmp_path / "results"
    log = tmp_path / "driver.log"
    # Long enough (several seconds per trial) that the kill lands while both trials are in flight.
    spec = make_spec("workerkill", parameterizations=["completep"], depths=[2, 4], lrs=[2**-7], steps=2000)
    store = ResultStore(results / "workerkill")
    proc = _start_driver(spec, results, log)
    try:
        worker = _wait_for(lambda: _trial_worker(proc, log), 180, "a worker running a trial",
                           explain=lambda: "\n".join(f"{pid} {args[:120]}" for pid, args in _descendants(proc.pid)))
        assert not store.completed_ids(), "the kill should land before any trial finished"
        os.kill(worker, signal.SIGKILL)
        assert proc.wait(600) == 0, log.read_text()[-3000:]
    finally:
        _kill_group(proc)
    df = store.load()
    assert len(df) == 2 and set(df.status) == {"ok"}
    assert not store.errors_dir.exists() or not any(store.errors_dir.iterdir())
    assert "ActorDiedError" in log.read_text()  # the killed trial really failed and was retried


def _runs(uri: str, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def test_sweep_mirrors_into_mlflow_and_survives_a_dead_server(make_spec, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    results = tmp_path / "results"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = make_spec("tracked", depths=[2], lrs=[2**-7, 2**-6], steps=20)
    assert main(["run", str(spec), "--results", str(results), "--tracking-uri", uri]) == 0
    runs = _runs(uri, "tracked")
    children = runs[runs["tags.completep.role"] == "child"]
    assert (runs["tags.completep.role"] == "parent").sum() == 1 and len(children) == 4
    assert set(children["tags.trial_id"]) == ResultStore(results / "tracked").completed_ids()
    assert {"params.lr", "params.depth", "params.parameterization", "metrics.final_val_loss", "metrics.log2_lr"} <= set(runs.columns)
    client = MlflowClient(uri)
    steps = [len(client.get_metric_history(r, "val_loss")) for r in children.run_id]

    assert main(["run", str(spec), "--results", str(results), "--tracking-uri", uri]) == 0  # re-run
    assert main(["sync", str(results / "tracked"), "--tracking-uri", uri]) == 0
    again = _runs(uri, "tracked")
    assert len(again) == len(runs)  # no twin runs
    assert [len(client.get_metric_history(r, "val_loss")) for r in children.run_id] == steps  # no repeated steps

    dead = "http://127.0.0.1:9"  # nothing listens there
    spec2 = make_spec("untracked", depths=[2], lrs=[2**-7, 2**-6], steps=20)
    capsys.readouterr()
    assert main(["run", str(spec2), "--results", str(results), "--tracking-uri", dead]) == 0
    err = capsys.readouterr().err
    assert "sync" in err and dead in err  # one warning that says how to catch up
    assert len(ResultStore(results / "untracked").completed_ids()) == 4
    assert main(["sync", str(results / "untracked"), "--tracking-uri", uri]) == 0
    backfilled = _runs(uri, "untracked")
    assert (backfilled["tags.completep.role"] == "child").sum() == 4
