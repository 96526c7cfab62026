"""Fault injection (slow): every fault ends with each trial of the grid exactly once, no twin MLflow run.

Faults: the driver SIGKILLed before and during the sweep, Ctrl-C (SIGINT to the process group) and
SIGTERM (to the driver), a worker SIGKILLed mid-trial, a damaged row between runs, a second driver
on the same folder, a read-only results folder, an unreachable MLflow server. Interrupted runs must
exit 130 / 143, say how to resume, and leave no process behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from completep_sweep.interrupt import descendants
from completep_sweep.store import ResultStore
from completep_sweep.sweep import load_sweep

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "completep_sweep.cli"]
INTERRUPTED = {}  # exit codes seen, for the record (printed at the end of the module)


def rerun(spec: Path, results: Path, uri: str | None = None) -> subprocess.CompletedProcess:
    mlflow = ["--tracking-uri", uri] if uri else ["--no-mlflow"]
    done = subprocess.run(
        [*CLI, "run", str(spec), "--results", str(results), *mlflow],
        capture_output=True,
        text=True,
        timeout=900,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def assert_exactly_once(spec: Path, results: Path, uri: str | None = None) -> None:
    sweep = load_sweep(spec)
    store = ResultStore(results / sweep.name)
    rows = store.load()
    assert set(rows.trial_id) == sweep.ids and len(rows) == len(sweep.ids), "every trial once in load()"
    assert set(rows.status) <= {"ok", "diverged"}
    assert len(list(store.trials_dir.glob("*.parquet"))) == len(sweep.ids)
    curves = store.load_curves()
    assert not curves.duplicated(["trial_id", "step"]).any()
    if uri:
        import mlflow

        mlflow.set_tracking_uri(uri)
        runs = mlflow.search_runs(experiment_names=[sweep.name])
        children = runs[runs["tags.completep.role"] == "child"]
        assert (runs["tags.completep.role"] == "parent").sum() == 1
        assert children["tags.trial_id"].is_unique and set(children["tags.trial_id"]) == sweep.ids


@pytest.fixture
def sweep(make_spec, tmp_path):
    """12 short trials (about 1 s each), an MLflow store, a results folder."""
    spec = make_spec("faults", depths=[2, 4], lrs=[2**-8, 2**-7, 2**-6], steps=60)
    return spec, tmp_path / "results", f"sqlite:///{tmp_path / 'mlflow.db'}"


def rows(results: Path) -> int:
    return len(ResultStore(results / "faults").completed_ids())


@pytest.mark.parametrize("when", ["before the first row", "mid-sweep"])
def test_a_killed_driver_costs_only_the_trials_in_flight(sweep, tmp_path, when, start_driver):
    spec, results, uri = sweep
    driver = start_driver(spec, results, tmp_path / "first.log", uri)
    try:
        if when == "mid-sweep":
            driver.wait_until(lambda: rows(results) >= 3, "three rows")
        else:
            driver.wait_until(lambda: "trials ->" in driver.output(), "the driver to start")
        driver.proc.send_signal(signal.SIGKILL)
        driver.proc.wait(30)
    finally:
        driver.kill_all()
    before = {p.name: p.stat().st_mtime_ns for p in (results / "faults" / "trials").glob("*.parquet")}
    assert when != "mid-sweep" or 3 <= len(before) < 12
    done = rerun(spec, results, uri)
    assert f"{12 - len(before)} ran" in done.stdout
    after = {p.name: p.stat().st_mtime_ns for p in (results / "faults" / "trials").glob("*.parquet")}
    assert all(after[k] == v for k, v in before.items())  # finished rows were not redone
    assert_exactly_once(spec, results, uri)


@pytest.mark.parametrize(
    "signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"]
)
def test_an_interrupted_run_stops_cleanly_and_resumes(sweep, tmp_path, signum, to_group, start_driver):
    spec, results, uri = sweep
    driver = start_driver(spec, results, tmp_path / "first.log", uri)
    try:
        driver.wait_until(lambda: rows(results) >= 2, "two rows")
        (os.killpg if to_group else os.kill)(driver.proc.pid, signum)
        code = driver.proc.wait(120)
        deadline = time.monotonic() + 10  # what the driver started must be gone with it
        while driver.session() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = driver.session()
    finally:
        driver.kill_all()
    out = driver.output()
    INTERRUPTED[signal.Signals(signum).name] = code
    assert code == 128 + signum, out[-3000:]
    assert (
        f"interrupted by {signal.Signals(signum).name}" in out and "Resume with: completep-sweep run" in out
    )
    assert "Traceback" not in out, out[-3000:]
    assert left == [], f"processes left behind: {left}"
    kept = rows(results)
    assert 2 <= kept < 12
    import mlflow  # what finished was flushed to MLflow before the exit

    mlflow.set_tracking_uri(uri)
    children = mlflow.search_runs(experiment_names=["faults"]).query("`tags.completep.role` == 'child'")
    assert set(children["tags.trial_id"]) == ResultStore(results / "faults").completed_ids()
    rerun(spec, results, uri)
    assert_exactly_once(spec, results, uri)


def _trial_worker(driver) -> int | None:
    for pid in descendants(driver.proc.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                return pid
        except OSError:
            continue
    return None


def test_a_killed_worker_is_retried(make_spec, tmp_path, start_driver):
    results = tmp_path / "results"
    # Long enough (several seconds per trial) that the kill lands while both trials are in flight.
    spec = make_spec("workerkill", parameterizations=["completep"], depths=[2, 4], lrs=[2**-7], steps=2000)
    driver = start_driver(spec, results, tmp_path / "driver.log")
    worker = []
    try:
        driver.wait_until(
            lambda: worker.append(_trial_worker(driver)) or worker[-1], "a worker running a trial"
        )
        assert not ResultStore(results / "workerkill").completed_ids(), "the kill must land mid-trial"
        os.kill(worker[-1], signal.SIGKILL)
        assert driver.proc.wait(600) == 0, driver.output()[-3000:]
    finally:
        driver.kill_all()
    assert_exactly_once(spec, results)
    store = ResultStore(results / "workerkill")
    assert not store.errors_dir.exists() or not any(store.errors_dir.iterdir())
    assert "ActorDiedError" in driver.output()  # the killed trial really failed and was retried


def test_a_damaged_row_is_computed_again(sweep, tmp_path):
    spec, results, uri = sweep
    rerun(spec, results, uri)
    victim = sorted((results / "faults" / "trials").glob("*.parquet"))[5]
    with open(victim, "r+b") as f:
        f.truncate(100)  # a crash on a filesystem without atomic rename, a full disk
    done = rerun(spec, results, uri)
    assert "1 ran" in done.stdout and "quarantine" in done.stderr
    assert_exactly_once(spec, results, uri)


def test_a_second_driver_is_refused_while_the_first_lives(make_spec, tmp_path, start_driver):
    # Trials of several seconds: the first driver is surely alive when the second one starts.
    spec = make_spec("faults", depths=[2, 4], lrs=[2**-8, 2**-7, 2**-6], steps=600)
    results, uri = tmp_path / "results", f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = start_driver(spec, results, tmp_path / "first.log", uri)
    try:
        first.wait_until(lambda: rows(results) >= 1, "a row")
        second = subprocess.run(
            [*CLI, "run", str(spec), "--results", str(results), "--tracking-uri", uri],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2 and f"pid {first.proc.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert first.proc.wait(600) == 0, first.output()[-3000:]
    finally:
        first.kill_all()
    assert_exactly_once(spec, results, uri)


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="needs setpriv to drop root")
def test_a_read_only_results_folder_is_refused_up_front(make_spec):
    # Root writes anywhere, so the driver runs as nobody against a folder nobody cannot write.
    work = Path(tempfile.mkdtemp(prefix="completep-ro-"))
    try:
        work.chmod(0o755)
        spec = work / "ro.toml"
        shutil.copyfile(
            make_spec("ro", parameterizations=["completep"], depths=[2], lrs=[2**-7], steps=20), spec
        )
        spec.chmod(0o644)
        results = work / "results"
        results.mkdir(mode=0o755)
        as_nobody = (
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        )
        if not as_nobody:
            results.chmod(0o555)
        env = {**os.environ, "HOME": str(work), "XDG_CACHE_HOME": str(work / "cache")}
        refused = subprocess.run(
            [*as_nobody, *CLI, "run", str(spec), "--results", str(results), "--no-mlflow"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=work,
        )
        assert refused.returncode == 2 and "--results" in refused.stderr and "cannot write" in refused.stderr
        assert not any(results.iterdir())
        results.chmod(0o755)
        rerun(spec, results)
        assert_exactly_once(spec, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_an_unreachable_mlflow_never_stops_a_sweep_and_sync_catches_up(sweep, tmp_path):
    spec, results, uri = sweep
    dead = "http://127.0.0.1:9"  # nothing listens there
    done = subprocess.run(
        [*CLI, "run", str(spec), "--results", str(results), "--tracking-uri", dead],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0 and "sync" in done.stderr and dead in done.stderr
    assert (
        subprocess.run([*CLI, "sync", str(results / "faults"), "--tracking-uri", uri], timeout=300).returncode
        == 0
    )
    assert (
        subprocess.run([*CLI, "sync", str(results / "faults"), "--tracking-uri", uri], timeout=300).returncode
        == 0
    )
    assert_exactly_once(spec, results, uri)


def test_ui_stopped_with_sigterm_leaves_no_server(tmp_path, free_port):
    import urllib.request

    port = free_port()
    log = tmp_path / "ui.log"
    ui = subprocess.Popen(
        [*CLI, "ui", "--results", str(tmp_path), "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                opener.open(url, timeout=2)
                break
            except OSError:
                assert ui.poll() is None, log.read_text()
                time.sleep(0.5)
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(60) == 143
        time.sleep(1)
        with pytest.raises(OSError):
            opener.open(url, timeout=2)  # nothing listens any more
    finally:
        try:
            os.killpg(ui.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
