"""Search methods end to end on local Ray (slow): interrupted searches resume without recomputing."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from completep_sweep.search import make_plan
from completep_sweep.store import ResultStore
from completep_sweep.sweep import load_sweep

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "completep_sweep.cli"]
TRAIN = """[model_overrides]
base_width = 16
seq_len = 32
[train]
steps = 60
batch_size = 8
warmup_steps = 5
eval_interval = 30
eval_batches = 2
"""


def run(spec, results) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*CLI, "run", str(spec), "--results", str(results), "--no-mlflow"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def mtimes(store: ResultStore) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in store.trials_dir.glob("*.parquet")}


def test_an_interrupted_bracket_search_resumes_at_the_same_round(tmp_path, start_driver):
    spec = tmp_path / "br.toml"
    spec.write_text(f"""name = "br"
model = "tiny"
parameterizations = ["completep"]
[grid]
width = [32]
depth = [2, 4]
lr = {{ log2_range = [-10, -6], step = 2 }}
{TRAIN}[search]
method = "bracket"
seeds = 2
""")
    results = tmp_path / "results"
    store = ResultStore(results / "br")
    driver = start_driver(spec, results, tmp_path / "first.log")
    driver.wait_until(lambda: len(store.completed_ids()) >= 5, "five rows")

    driver.proc.send_signal(signal.SIGINT)
    assert driver.proc.wait(120) == 130, driver.output()[-3000:]
    first = mtimes(store)
    done = run(spec, results)
    assert "bracket search" in done.stderr
    assert all(mtimes(store)[k] == v for k, v in first.items())  # nothing finished was run again
    sweep = load_sweep(spec)
    plan = make_plan(sweep, store.load(), store.root)
    assert plan.finished and set(plan.phases().values()) <= {"done", "limit"}
    rows = store.load()
    assert set(rows.trial_id) == {c.trial_id for c in plan.planned()} and rows.trial_id.is_unique
    assert f"{len(rows) - len(first)} ran" in done.stdout
    assert "0 ran" in run(spec, results).stdout  # a third run has nothing to do


def test_an_optuna_study_runs_exactly_n_trials_across_runs_and_an_interruption(tmp_path, start_driver):
    import optuna
    from optuna.trial import TrialState

    spec = tmp_path / "tune.toml"
    spec.write_text(f"""name = "tune"
model = "tiny"
parameterizations = ["completep"]
[grid]
width = [32]
depth = [2]
lr = {{ log2_range = [-10, -3] }}
{TRAIN}[search]
method = "optuna"
n_trials = 8
""")
    results = tmp_path / "results"
    store = ResultStore(results / "tune")
    driver = start_driver(spec, results, tmp_path / "first.log")
    driver.wait_until(lambda: len(store.completed_ids()) >= 3, "three rows")
    driver.proc.send_signal(signal.SIGTERM)
    assert driver.proc.wait(120) == 143, driver.output()[-3000:]
    first = mtimes(store)
    assert 3 <= len(first) < 8
    run(spec, results)
    assert "0 ran" in run(spec, results).stdout
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{store.root / 'optuna.db'}")
    counted = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(counted) == 8 and not study.get_trials(states=(TrialState.RUNNING,))
    rows = store.load()
    assert len(rows) == 8 and rows.trial_id.is_unique and all(mtimes(store)[k] == v for k, v in first.items())
    sweep = load_sweep(spec)
    assert {sweep.template.replace(**t.params).trial_id for t in counted} == set(rows.trial_id)
