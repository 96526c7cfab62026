"""A full disk (issue 17): before the run, one line and exit 3 with nothing created; mid-run, the
finished rows kept, the trials in flight stopped and counted as not run, no curve without its row,
exit 3 with the command that resumes, and the resumed run writes every trial exactly once."""

from __future__ import annotations

import errno
import os
from collections import namedtuple

import pytest

from completep_sweep.store import ResultStore

EXIT_ENVIRONMENT = 3


def _full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_before_the_run_is_one_line_and_creates_nothing(make_spec, tmp_path, cli, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda _p: usage(10 << 30, (10 << 30) - 4096, 4096))
    results = tmp_path / "results"
    code, _, err = cli("run", make_spec("full"), "--results", results, "--no-mlflow")
    assert code == EXIT_ENVIRONMENT and "4 KB free" in err and "free space" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not results.exists()


def test_a_disk_that_fills_at_the_lock_leaves_no_empty_lock_file(make_spec, tmp_path, cli, monkeypatch):
    monkeypatch.setattr("completep_sweep.store.os.write", _full)
    results = tmp_path / "results"
    code, _, err = cli("run", make_spec("full"), "--results", results, "--no-mlflow")
    assert code == EXIT_ENVIRONMENT and "No space left on device" in err and "Traceback" not in err
    assert not (results / "full" / ".driver.lock").exists()


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_keeps_the_rows_and_resumes_exactly_once(
    make_spec, tmp_path, cli, monkeypatch
):
    import ray

    import completep_sweep.store as store_module

    spec = make_spec("filling", depths=[2, 4, 8], steps=20)  # 12 trials, two at a time
    results = tmp_path / "results"
    real = store_module._write_table
    rows = []

    def fills_after_two_rows(path, records, schema):
        if path.parent.name == "trials":
            if len(rows) >= 2:
                _full()
            rows.append(path)
        real(path, records, schema)

    monkeypatch.setattr(store_module, "_write_table", fills_after_two_rows)
    try:
        code, _, err = cli("run", spec, "--results", results, "--no-mlflow")
    finally:
        ray.shutdown()
    assert code == EXIT_ENVIRONMENT, err
    assert (
        "No space left on device" in err
        and "resume with: completep-sweep run" in err
        and "Traceback" not in err
    )
    store = ResultStore(results / "filling")
    assert len(store.load()) == 2
    assert {p.name for p in store.curves_dir.glob("*.parquet")} == {
        p.name for p in store.trials_dir.glob("*.parquet")
    }
    assert store.runs()[-1]["failed"].startswith("cannot write")

    monkeypatch.setattr(store_module, "_write_table", real)  # space again
    try:
        code, _, err = cli("run", spec, "--results", results, "--no-mlflow")
    finally:
        ray.shutdown()
    assert code == 0, err
    done = store.load()
    assert len(done) == 12 and done.trial_id.is_unique
