"""Read commands on a folder this process cannot write (issue 17): ``report`` prints its answer and
says the files were not written, ``export`` prints to stdout, ``status`` and ``validate`` work,
``sync`` and ``export -o`` into the folder refuse with one line (exit 2); nothing is written.

Root writes anywhere, so as root the commands run as nobody (setpriv); otherwise the folder is
made read-only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "release-0.1.0"
CLI = [sys.executable, "-m", "completep_sweep.cli"]


@pytest.fixture
def read_only_results():
    work = Path(tempfile.mkdtemp(prefix="completep-ro-"))
    try:
        work.chmod(0o755)
        folder = Path(shutil.copytree(FIXTURE, work / "results" / "release-0.1.0"))
        for p in [work / "results", *folder.rglob("*")] + [folder]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        if os.geteuid() != 0:
            for p in [work / "results", folder, *folder.rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)
        yield work, folder
    finally:
        for p in [work, *work.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(work, ignore_errors=True)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.parent.rglob("*"))}


def test_read_commands_work_on_a_folder_they_cannot_write(read_only_results):
    work, folder = read_only_results
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    env = {**os.environ, "HOME": str(work), "XDG_CACHE_HOME": str(work / "cache"), "MPLBACKEND": "Agg"}

    def cli(*args):
        return subprocess.run(
            [*as_nobody, *CLI, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=work,
        )

    before = _snapshot(folder)
    report = cli("report", folder, "--json", "--no-mlflow")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["optima"] and "report files not written" in report.stderr
    text = cli("report", folder, "--mlflow")  # the MLflow attach is skipped too: nothing to attach
    assert text.returncode == 0 and "48 trials" in text.stdout and "Traceback" not in text.stderr, text.stderr
    for args in (
        ["status", folder],
        ["export", folder, "--format", "csv"],
        ["validate", folder / "spec.toml", "--results", folder.parent],
    ):
        done = cli(*args)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)
    exported = cli("export", folder, "-o", folder / "optima.csv")
    assert exported.returncode == 2 and "--output: cannot write" in exported.stderr, exported.stderr
    synced = cli("sync", folder)
    assert synced.returncode == 2 and "cannot write" in synced.stderr and "Traceback" not in synced.stderr
    assert _snapshot(folder) == before  # nothing written, nothing moved
