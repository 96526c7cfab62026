"""A copied results folder (issue 17): its MLflow store's artifact locations follow the copy, so a
sync or report of the copy writes only into the copy, and its UI serves the copy's files."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing

from completep_sweep.tracking import relocate_artifacts


def _files(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _locations(db) -> list[str]:
    with closing(sqlite3.connect(db)) as con:
        experiments = [
            r[0] for r in con.execute("SELECT artifact_location FROM experiments WHERE name != 'Default'")
        ]
        runs = [r[0] for r in con.execute("SELECT artifact_uri FROM runs")]
    return experiments + runs


def test_a_copied_folder_writes_and_serves_only_its_own_artifacts(
    release_fixture, tmp_path, cli, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    original = tmp_path / "a"
    original.mkdir()
    shutil.move(release_fixture, original / "release-0.1.0")
    code, _, err = cli("report", original / "release-0.1.0", "--mlflow")  # the report, and MLflow
    assert code == 0 and (original / "mlartifacts").is_dir(), err
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    before = _files(original)
    code, _, err = cli("report", copy / "release-0.1.0", "--mlflow")
    assert code == 0 and "warning" not in err, err
    code, _, err = cli("sync", copy / "release-0.1.0")
    assert code == 0, err
    assert _files(original) == before  # nothing written into the original
    locations = _locations(copy / "mlflow.db")
    assert locations and all(loc.startswith((copy / "mlartifacts").as_uri() + "/") for loc in locations)
    assert all(
        loc.startswith((original / "mlartifacts").as_uri() + "/")
        for loc in _locations(original / "mlflow.db")
    )
    assert relocate_artifacts(copy / "mlflow.db", copy) == 0  # already home: nothing to move
