"""The example a user copies (examples/gpt2-sweep.toml: HuggingFace GPT-2 trained by the user's own
function, examples/gpt2_trainer.py) runs end to end through Ray Tune: a driver killed mid-sweep
resumes with no repeated trial, and report and export read its rows as they read the built-in
model's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from completep_sweep.store import ResultStore
from completep_sweep.sweep import load_sweep

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "gpt2-sweep.toml"
CLI = [sys.executable, "-m", "completep_sweep.cli"]


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_the_gpt2_example_runs_resumes_after_a_kill_and_reports(tmp_path, start_driver):
    results = tmp_path / "results"
    store = ResultStore(results / "example-gpt2")
    driver = start_driver(SPEC, results, tmp_path / "driver.log")
    driver.wait_until(lambda: len(store.completed_ids()) >= 3, "three finished trials")
    driver.kill_all()  # SIGKILL, as a lost node or an OOM killer would
    before = set(store.completed_ids())
    done = cli("run", SPEC, "--results", results, "--no-mlflow")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(before)} already done" in done.stdout, done.stdout
    rows = store.load()
    ids = load_sweep(SPEC).ids
    assert (
        set(rows.trial_id) == ids and len(rows) == len(ids) == 20 and set(rows.status) <= {"ok", "diverged"}
    )
    assert len(list(store.trials_dir.glob("*.parquet"))) == 20
    assert set(rows.trainer) == {"examples.gpt2_trainer:train"}
    report = cli("report", store.root, "--json", "--no-mlflow")
    assert report.returncode == 0, report.stderr[-2000:]
    answer = json.loads(report.stdout)
    assert {r["parameterization"] for r in answer["recommendations"]} == {"mup", "completep"}
    export = cli("export", store.root, "--target-depth", 32, "--format", "csv")
    assert export.returncode == 0 and export.stdout.count("\n") == 3, export.stderr[-2000:]
