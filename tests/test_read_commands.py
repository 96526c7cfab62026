"""Read commands read: `report`, `export` and `status` leave a results folder as they found it.

`report` adds its own report/ folder and nothing else; only `run` sets damaged files aside, and
only `report --mlflow` (or `sync`) writes an MLflow store.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file under ``root`` (its bytes' hash, size, mode and modification time) and folder (its
    mode: a folder's time changes with its entries, and the entries are compared themselves)."""
    out = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[path.relative_to(root).as_posix()] = (digest, stat.st_size, stat.st_mode, stat.st_mtime_ns)
        else:
            out[path.relative_to(root).as_posix()] = ("folder", stat.st_mode)
    return out


def test_report_export_and_status_leave_every_file_as_it_was(release_fixture, cli, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = release_fixture.parent  # the results root: where an MLflow store would appear
    damaged = sorted((release_fixture / "trials").glob("*.parquet"))[2]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a truncated row: unreadable
    curve = sorted((release_fixture / "curves").glob("*.parquet"))[5]
    curve.write_bytes(b"not parquet")
    before = _snapshot(root)
    for command in (
        ["status", release_fixture],
        ["export", release_fixture, "--format", "csv"],
        ["export", release_fixture, "--target-depth", "16", "--format", "toml"],
        ["report", release_fixture],
        ["report", release_fixture, "--json"],
    ):
        code, out, err = cli(*command)
        assert code == 0 and "Traceback" not in err, (command, err)
        assert damaged.name in err, (command, err)  # said, and skipped
    after = _snapshot(root)
    added = set(after) - set(before)
    assert added and all(p.startswith("release-0.1.0/report") for p in added), sorted(added)
    assert {p: after[p] for p in before} == before  # the damaged files too: nothing moved or rewritten
    assert not (root / "mlflow.db").exists() and not (release_fixture / ".driver.lock").exists()


def test_report_writes_mlflow_only_when_asked(release_fixture, cli, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = release_fixture.parent
    assert cli("report", release_fixture)[0] == 0
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()
    code, _, err = cli("report", release_fixture, "--mlflow")
    assert code == 0 and (root / "mlflow.db").is_file(), err


def test_a_rows_only_folder_that_matches_no_sweep_says_how_many_rows_and_why(release_fixture, cli):
    """Rows whose spec.toml is another sweep's: the message counts them and says why none counts."""
    spec = release_fixture / "spec.toml"
    spec.write_text(spec.read_text().replace("depth = [2, 4, 8]", "depth = [3]"))
    code, _, err = cli("report", release_fixture)
    assert code == 2 and "48" in err and "earlier version" in err, err


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold(lock: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(lock), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_driver_holds_probes_the_lock_without_taking_it(tmp_path):
    from completep_sweep.store_lock import LOCK_FILE, driver_holds

    assert not driver_holds(tmp_path)  # no lock file
    lock = tmp_path / LOCK_FILE
    lock.write_text("pid 1: an old run")
    assert not driver_holds(tmp_path)  # a file nobody holds
    holder = _hold(lock, 30)
    try:
        assert driver_holds(tmp_path) and lock.read_text() == "pid 1: an old run"
    finally:
        holder.kill()
        holder.wait()
    assert not driver_holds(tmp_path)


@pytest.mark.parametrize("hold_s", [1.5])
def test_status_watch_waits_for_a_starting_driver(release_fixture, cli, monkeypatch, hold_s):
    """A finished folder whose lock a starting `run` holds: the watch goes on until it lets go."""
    from completep_sweep.store_lock import LOCK_FILE

    monkeypatch.setattr("completep_sweep.commands.status.START_WAIT_S", 0.05)
    holder = _hold(release_fixture / LOCK_FILE, hold_s)
    try:
        code, out, _ = cli("status", release_fixture, "--watch", "--interval", "0.2")
        ended = holder.poll()
    finally:
        holder.kill()
        holder.wait()
    assert code == 0 and ended is not None, out  # it returned only once the driver had let go
    assert out.count("Ctrl-C to stop watching") >= 2, out


def test_status_watch_on_a_finished_folder_waits_briefly_for_a_driver_then_ends(
    release_fixture, cli, monkeypatch
):
    monkeypatch.setattr("completep_sweep.commands.status.START_WAIT_S", 0.3)
    code, out, _ = cli("status", release_fixture, "--watch", "--interval", "0.05")
    assert code == 0 and "waiting up to 0.3s for a driver to start" in out, out
    assert "Ctrl-C" not in out.split("waiting up to")[-1]  # then it ended: the sweep is finished
