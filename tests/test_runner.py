"""The sweep driver without a Ray cluster: the progress line and the row writer (``Recorder``)."""

import io
import time
from types import SimpleNamespace

import pytest

from completep_sweep.runner.sweep import Progress, Recorder
from completep_sweep.store import ResultStore


def test_progress_eta_weighs_trials_by_flops():
    p = Progress(total=4, done_before=0, flops_pending=100.0, stream=io.StringIO())
    assert "ETA -" in p.line()
    p.first_trial = time.monotonic() - 10.0  # 10 s of work done 10% of the FLOPs
    p.finish("ok", 10.0)
    eta = p.line().split("ETA ")[1]
    assert eta.startswith("1m3") or eta.startswith("1m2")  # about 90 s left, not 3 trials x 10 s
    p.finish("diverged", 90.0)
    p.finish("error", 0.0)
    assert "[3/4] 1 ok, 1 diverged, 1 error, 0 running" in p.line()


class Sink:
    def __init__(self):
        self.logged = []

    def log_trial(self, row, curve):  # the row and curve just written: the tracker re-reads nothing
        assert row["trial_id"] and isinstance(curve, list)
        self.logged.append(row["trial_id"])


def fake_trial(result, *, error: Exception | None = None):
    """What Tune hands a callback: the trial's config, status, last result and error."""
    return SimpleNamespace(
        trial_id=result.config.trial_id[:8],
        config={"trial": result.config.to_dict()},
        status="TERMINATED",
        last_result=None,
        get_error=lambda: error,
    )


@pytest.fixture
def recorder(tmp_path):
    store = ResultStore(tmp_path / "sweep")
    progress = Progress(total=3, done_before=0, flops_pending=3.0, stream=io.StringIO())
    return Recorder(store, progress, Sink())


def test_recorder_writes_each_trial_once_and_tells_the_sink(recorder, make_result):
    ok, diverged = make_result(lr=2.0**-7, worker="node-a"), make_result(lr=1.0, status="diverged")
    for result in (ok, ok, diverged):  # Ray may deliver a result twice after a restore
        trial = fake_trial(result)
        report = {"row": result.row(), "curve": [vars(p) for p in result.curve]}
        recorder.on_trial_result(0, [trial], trial, report)
        trial.last_result = report
        recorder.on_trial_complete(0, [trial], trial)
    store = recorder.store
    assert store.completed_ids() == {ok.config.trial_id, diverged.config.trial_id}
    rows = store.load().set_index("trial_id")
    assert rows.loc[ok.config.trial_id, "worker"] == "node-a"
    assert rows.loc[diverged.config.trial_id, "status"] == "diverged"
    assert len(store.load_curves()) == 2 * len(ok.curve)  # no duplicated curve points
    assert recorder.sink.logged == [ok.config.trial_id, diverged.config.trial_id]
    assert (recorder.progress.ok, recorder.progress.diverged) == (1, 1)
    assert "lr=2^-7 seed 0: val" in recorder.progress.stream.getvalue()


def test_recorder_keeps_an_error_apart_until_the_trial_succeeds(recorder, make_result):
    result = make_result(lr=2.0**-6)
    trial = fake_trial(result, error=RuntimeError("CUDA out of memory"))
    recorder.on_trial_error(0, [trial], trial)
    store = recorder.store
    assert store.completed_ids() == set()  # an errored trial is pending: the next run retries it
    errors = store.load()
    assert list(errors.status) == ["error"] and "out of memory" in errors.error.iloc[0]
    assert recorder.progress.errored == 1 and recorder.sink.logged == []
    recorder.on_trial_result(0, [trial], trial, {"row": result.row(), "curve": []})
    assert store.completed_ids() == {result.config.trial_id}
    assert list(store.load().status) == ["ok"] and not any(store.errors_dir.iterdir())


def test_recorder_keeps_the_live_view_of_running_trials(recorder, make_result):
    first, second = make_result(lr=2.0**-7), make_result(lr=2.0**-6)
    a, b = fake_trial(first), fake_trial(second)
    store = recorder.store
    recorder.on_trial_start(0, [a, b], a)
    recorder.on_trial_start(0, [a, b], b)
    recorder.on_trial_result(0, [a, b], a, {"step": 40, "val_loss": 3.25, "train_loss": 3.3})
    live = store.read_live()
    assert set(live) == {a.trial_id, b.trial_id}
    assert (live[a.trial_id]["step"], live[a.trial_id]["val_loss"]) == (40, 3.25)
    assert live[b.trial_id]["step"] == 0 and "lr=2^-6" in live[b.trial_id]["trial"]
    a.last_result = {"row": first.row(), "curve": []}
    recorder.on_trial_result(0, [a, b], a, a.last_result)
    recorder.on_trial_complete(0, [a, b], a)
    assert set(store.read_live()) == {b.trial_id}  # a finished trial leaves the live view


def test_a_dead_drivers_live_view_shows_nothing(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    store = ResultStore(tmp_path / "sweep")
    store.root.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    monkeypatch.setattr(os, "getpid", lambda: int(dead.stdout))
    store.write_live({"t1": {"trial": "x", "started": 0.0, "step": 3, "steps": 10}})
    monkeypatch.undo()
    assert store.live_path.exists() and store.read_live() == {}  # its trials are not running any more
    store.write_live({"t1": {"trial": "x", "started": 0.0, "step": 3, "steps": 10}})
    assert set(store.read_live()) == {"t1"}  # this process is alive
