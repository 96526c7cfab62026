"""MLflow mirror: layout, idempotence, repair of interrupted children, and an unreachable server."""

import hashlib
import json
import subprocess
import sys

import pytest

from completep_sweep import tracking
from completep_sweep.fmt import pow2
from completep_sweep.store import ResultStore
from completep_sweep.tracking import TrackingError, sync
from completep_sweep.tracking.tracker import Tracker
from completep_sweep.tracking.ui import serve_ui, ui_url
from completep_sweep.trial import CurvePoint, TrialConfig, TrialResult

SPEC = """name = "demo"
model = "tiny"
description = "depth transfer, small"
parameterizations = ["mup", "completep"]
[grid]
lr = [0.0078125, 0.015625]
depth = [2, 4]
"""
STEPS = (100, 200, 300)
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture
def trial(make_result):
    """A finished trial of the demo sweep: 300 steps, evaluated at STEPS."""

    def make(parameterization="completep", lr=2.0**-7, depth=2, weight_decay=0.0) -> TrialResult:
        return make_result(
            sweep="demo",
            parameterization=parameterization,
            lr=lr,
            depth=depth,
            weight_decay=weight_decay,
            steps=300,
            curve_steps=STEPS,
            flops=2e9,
            wall_time_s=3.0,
            code_version="abc123",
        )

    return make


@pytest.fixture
def sweep_dir(tmp_path, trial):
    """results/demo with 8 trials (2 parameterizations × 2 lrs × 2 depths), a spec and a report."""
    store = ResultStore(tmp_path / "results" / "demo")
    store.write_spec(SPEC)
    for p in ("mup", "completep"):
        for lr in (2.0**-7, 2.0**-6):
            for depth in (2, 4):
                store.write_result(trial(p, lr, depth))
    report = store.root / "report"
    report.mkdir()
    (report / "verdict.json").write_text(json.dumps({"completep": "transfers"}))
    (report / "lr_vs_loss.png").write_bytes(b"\x89PNG fake")
    return store.root


def uri_of(sweep_dir) -> str:
    return f"sqlite:///{sweep_dir.parent / 'mlflow.db'}"


def runs(uri):
    import mlflow

    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=["demo"])
    parents = df[df["tags.completep.role"] == "parent"]
    children = df[df["tags.completep.role"] == "child"]
    return parents, children


def history_lengths(uri, children, key="val_loss") -> dict[str, int]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return {
        row["tags.trial_id"]: len(client.get_metric_history(row.run_id, key))
        for _, row in children.iterrows()
    }


def test_importing_the_module_does_not_import_mlflow():
    code = "import sys, completep_sweep.tracking; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5555")
    assert tracking.default_tracking_uri(tmp_path) == "http://127.0.0.1:5555"


def test_pow2_names_octaves_and_falls_back_to_digits():
    assert pow2(2.0**-7) == "2^-7" and pow2(2.0**-7.5) == "2^-7.5"
    assert pow2(1.0) == "2^0" and pow2(0.003) == "2^-8.38" and pow2(0.0) == "0"


def test_sync_creates_one_parent_and_one_child_per_trial(sweep_dir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    counts = sync(sweep_dir)  # the default URI: results/mlflow.db
    assert counts == {"created": 8, "updated": 0, "skipped": 0}
    uri = uri_of(sweep_dir)
    parents, children = runs(uri)
    assert len(parents) == 1 and len(children) == 8
    parent = parents.iloc[0]
    assert parent["tags.completep.sweep"] == "demo"
    assert parent["tags.completep.spec_hash"] == hashlib.sha256(SPEC.encode()).hexdigest()[:12]
    assert parent["tags.completep.code_version"] == "abc123"
    assert parent["params.grid.lr"] == "[0.0078125, 0.015625]" and parent["params.grid.depth"] == "[2, 4]"
    assert parent["params.model"] == "tiny" and parent["params.parameterizations"] == "mup,completep"
    assert parent.artifact_uri.startswith((sweep_dir.parent.resolve() / "mlartifacts").as_uri())

    store = ResultStore(sweep_dir)
    assert set(children["tags.trial_id"]) == store.completed_ids()
    assert set(children["tags.mlflow.parentRunId"]) == {parent.run_id}
    assert set(children["tags.status"]) == {"ok"} and set(children.status) == {"FINISHED"}
    assert "completep d4 w64 lr=2^-6 s0" in set(children["tags.mlflow.runName"])
    row = store.load().set_index("trial_id")
    for _, child in children.iterrows():
        expected = row.loc[child["tags.trial_id"]]
        assert float(child["params.lr"]) == expected.lr and int(child["params.depth"]) == expected.depth
        assert child["params.parameterization"] == expected.parameterization
        assert child["params.alpha"] == ("none" if expected.parameterization == "mup" else "1.0")
        assert child["params.tokens"] == str(expected.tokens) and child["params.seed"] == str(expected.seed)
        assert child["params.base_width"] == str(expected.base_width)
        assert child["metrics.final_val_loss"] == expected.final_val_loss
        assert child["metrics.log2_lr"] == pytest.approx(-7 if expected.lr == 2.0**-7 else -6)
        assert child["metrics.flops"] == 2e9 and child["metrics.wall_time_s"] == 3.0
        assert child["metrics.val_loss"] == pytest.approx(4.1 - 3 + expected.lr)  # the last step's value
    # Constant in this sweep: not a child param (the parent holds the sweep file's settings).
    assert "params.weight_decay" not in children and "params.batch_size" not in children

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    one = children.run_id.iloc[0]
    assert [m.step for m in client.get_metric_history(one, "val_loss")] == list(STEPS)
    assert [m.step for m in client.get_metric_history(one, "train_loss")] == list(STEPS)
    assert {a.path for a in client.list_artifacts(parent.run_id)} == {"spec.toml", "report"}
    assert {a.path for a in client.list_artifacts(parent.run_id, "report")} == {
        "report/verdict.json",
        "report/lr_vs_loss.png",
    }


def test_sync_twice_adds_nothing_and_a_resumed_sweep_adds_only_new_trials(sweep_dir, trial):
    uri = uri_of(sweep_dir)
    sync(sweep_dir, uri)
    _, children = runs(uri)
    before = history_lengths(uri, children)
    assert set(before.values()) == {len(STEPS)}

    assert sync(sweep_dir, uri) == {"created": 0, "updated": 0, "skipped": 8}
    parents, children = runs(uri)
    assert len(parents) == 1 and len(children) == 8
    assert history_lengths(uri, children) == before
    assert set(history_lengths(uri, children, "train_loss").values()) == {len(STEPS)}

    # Resume with one more trial, a new swept HP, and an edited sweep file (extended grid).
    ResultStore(sweep_dir).write_result(trial(weight_decay=0.1))
    ResultStore(sweep_dir).write_spec(SPEC.replace("0.015625]", "0.015625, 0.03125]"))
    # weight_decay varies now, so it becomes a param of every child: the old ones are updated.
    assert sync(sweep_dir, uri) == {"created": 1, "updated": 8, "skipped": 0}
    parents, children = runs(uri)
    assert (
        len(parents) == 1
        and len(children) == 9
        and set(history_lengths(uri, children).values()) == {len(STEPS)}
    )
    new = children["tags.trial_id"] == trial(weight_decay=0.1).config.trial_id
    assert list(children[new]["params.weight_decay"]) == ["0.1"]
    assert set(children[~new]["params.weight_decay"]) == {"0.0"}
    assert sync(sweep_dir, uri) == {"created": 0, "updated": 0, "skipped": 9}
    parent = parents.iloc[0]
    assert parent["params.grid.lr"] == "[0.0078125, 0.015625]"  # params are immutable in MLflow ...
    assert parent["tags.spec.grid.lr"] == "[0.0078125, 0.015625, 0.03125]"  # ... the new value is a tag
    assert (
        parent["tags.completep.spec_hash"]
        == hashlib.sha256(ResultStore(sweep_dir).spec_path.read_bytes()).hexdigest()[:12]
    )


def test_an_interrupted_child_is_completed_without_a_twin(sweep_dir, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = uri_of(sweep_dir)
    real_log_batch = MlflowClient.log_batch
    calls = []

    def failing_log_batch(self, run_id, metrics=(), params=(), tags=(), **kw):
        calls.append(run_id)
        if len(calls) == 3:  # parent params, first child, then the second child dies mid-way
            real_log_batch(self, run_id, metrics=list(metrics)[:2], params=params, tags=tags)
            raise MlflowException("connection reset")
        return real_log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", failing_log_batch)
    with pytest.raises(TrackingError, match="connection reset"):
        sync(sweep_dir, uri)
    monkeypatch.setattr(MlflowClient, "log_batch", real_log_batch)
    _, children = runs(uri)
    assert len(children) == 2 and sorted(children.status) == ["FINISHED", "RUNNING"]

    counts = sync(sweep_dir, uri)
    assert counts == {"created": 6, "updated": 1, "skipped": 1}
    _, children = runs(uri)
    assert len(children) == 8 and set(children.status) == {"FINISHED"}
    assert set(history_lengths(uri, children).values()) == {len(STEPS)}
    assert set(history_lengths(uri, children, "train_loss").values()) == {len(STEPS)}
    assert children["metrics.final_val_loss"].notna().all()


def test_a_child_missing_some_steps_gets_only_those(sweep_dir):
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = uri_of(sweep_dir)
    sync(sweep_dir, uri)
    client = MlflowClient(uri)
    _, children = runs(uri)
    run_id = children.run_id.iloc[0]
    client.delete_run(children.run_id.iloc[1])  # a deleted child counts as missing: it is re-created
    # Simulate a child whose first sync stopped after one step: a fresh run holding step 100 only.
    child = client.get_run(run_id)
    client.delete_run(run_id)
    partial = client.create_run(child.info.experiment_id, tags=child.data.tags)
    client.log_batch(
        partial.info.run_id, metrics=[Metric("val_loss", 9.0, 0, 100), Metric("train_loss", 9.0, 0, 100)]
    )

    assert sync(sweep_dir, uri) == {"created": 1, "updated": 1, "skipped": 6}
    _, children = runs(uri)
    assert len(children) == 8 and set(history_lengths(uri, children).values()) == {len(STEPS)}
    steps = [m.step for m in client.get_metric_history(partial.info.run_id, "val_loss")]
    assert sorted(steps) == list(STEPS)


def finished(sweep_dir):
    """(rows, {trial_id: curve points}) as the driver holds them when it writes them."""
    store = ResultStore(sweep_dir)
    curves = store.load_curves()
    return (
        store.load().to_dict("records"),
        {tid: g.drop(columns="trial_id").to_dict("records") for tid, g in curves.groupby("trial_id")},
    )


def test_tracker_logs_in_the_background_from_what_the_driver_hands_it(sweep_dir, capsys, monkeypatch):
    uri = uri_of(sweep_dir)
    rows, curves = finished(sweep_dir)

    def no_reading(*a, **k):
        raise AssertionError("the tracker re-read the results folder")

    for reader in ("load", "load_curves", "read_spec"):
        monkeypatch.setattr(ResultStore, reader, no_reading)
    tracker = Tracker(sweep_dir, uri, spec_text=SPEC)
    rows = sorted(rows, key=lambda r: r["trial_id"])
    for row in rows[:5]:
        tracker.log_trial(row, curves[row["trial_id"]])
    tracker.log_trial({**rows[5], "status": "error"}, [])  # an errored trial: nothing to log
    tracker.close(timeout=120)
    monkeypatch.undo()
    ids = [r["trial_id"] for r in rows]
    assert not tracker.failed and "MLflow at" not in capsys.readouterr().err
    parents, children = runs(uri)
    assert len(parents) == 1 and set(children["tags.trial_id"]) == set(ids[:5])
    assert set(history_lengths(uri, children).values()) == {len(STEPS)}
    assert sync(sweep_dir, uri)["created"] == 3


def test_tracker_backfills_rows_a_killed_driver_never_logged(sweep_dir):
    uri = uri_of(sweep_dir)
    rows, _ = finished(sweep_dir)
    tracker = Tracker(sweep_dir, uri, spec_text=SPEC, backfill=rows)  # the rows `run` loaded at its start
    tracker.close(timeout=120)
    parents, children = runs(uri)
    assert len(parents) == 1 and set(children["tags.trial_id"]) == ResultStore(sweep_dir).completed_ids()
    assert sync(sweep_dir, uri) == {"created": 0, "updated": 0, "skipped": 8}


def test_a_store_killed_while_being_created_is_never_left_half_made(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    import completep_sweep.tracking as tracking_package

    db = tmp_path / "mlflow.db"

    def dies_midway(self, *a, **k):
        raise KeyboardInterrupt  # the driver killed while MLflow creates its tables

    monkeypatch.setattr(MlflowClient, "search_experiments", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        tracking_package.connect(f"sqlite:///{db}", tmp_path)
    assert not db.exists() and not list(tmp_path.glob(".mlflow.db*"))
    monkeypatch.undo()
    tracking_package.connect(f"sqlite:///{db}", tmp_path)
    assert db.exists()


def test_tracker_with_unreachable_server_warns_once_and_sync_fills_in_later(sweep_dir, capsys):
    tracker = Tracker(sweep_dir, UNREACHABLE)
    rows, curves = finished(sweep_dir)
    for row in rows:
        tracker.log_trial(row, curves[row["trial_id"]])
    tracker.close(timeout=60)
    tracker.log_trial(rows[0], curves[rows[0]["trial_id"]])  # a no-op once failed, never an error
    err = capsys.readouterr().err
    assert tracker.failed
    assert err.count("warning: MLflow at") == 1 and f"MLflow at {UNREACHABLE} unreachable: " in err
    assert "rows are safe in Parquet" in err and f"completep-sweep sync {sweep_dir}" in err

    uri = uri_of(sweep_dir)
    assert sync(sweep_dir, uri) == {"created": 8, "updated": 0, "skipped": 0}
    parents, children = runs(uri)
    assert len(parents) == 1 and len(children) == 8


def test_sync_to_unreachable_server_raises_naming_the_uri(sweep_dir):
    with pytest.raises(TrackingError, match="127.0.0.1:9") as info:
        sync(sweep_dir, UNREACHABLE)
    assert "MLFLOW_TRACKING_URI" in str(info.value)


def test_ui_url_points_at_the_experiment(sweep_dir):
    uri = uri_of(sweep_dir)
    root = sweep_dir.parent
    assert ui_url(root, port=5123, tracking_uri=uri) == "http://127.0.0.1:5123/"
    sync(sweep_dir, uri)
    parents, _ = runs(uri)
    expected = f"http://127.0.0.1:5123/#/experiments/{parents.experiment_id.iloc[0]}/runs?workflowType=machine_learning"
    assert ui_url(root, "demo", port=5123, tracking_uri=uri) == expected


def test_serve_ui_refuses_a_remote_server():
    with pytest.raises(TrackingError, match="already a server"):
        serve_ui(None, tracking_uri="http://127.0.0.1:5555")


def test_a_diverged_trial_keeps_its_status_and_nan_points(tmp_path):
    import math

    from mlflow import MlflowClient

    config = TrialConfig(sweep="demo", lr=1.0, steps=300)
    curve = (
        CurvePoint(step=100, tokens=1, train_loss=5.0, val_loss=5.1, lr=1.0),
        CurvePoint(step=200, tokens=2, train_loss=math.inf, val_loss=math.nan, lr=1.0),
    )
    diverged = TrialResult(
        config=config,
        status="diverged",
        final_train_loss=math.inf,
        final_val_loss=math.nan,
        diverged_at_step=150,
        steps_done=150,
        clip_fraction=0.0,
        flops=1e9,
        n_params=1000,
        wall_time_s=1.0,
        device="cpu",
        started_at="",
        code_version="abc123",
        curve=curve,
    )
    ResultStore(tmp_path / "demo").write_result(diverged)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert sync(tmp_path / "demo", uri) == {"created": 1, "updated": 0, "skipped": 0}
    _, children = runs(uri)
    child = children.iloc[0]
    assert child["tags.status"] == "diverged" and child["metrics.diverged_at_step"] == 150
    assert "metrics.final_val_loss" not in children  # NaN: not logged, so it never looks like a loss
    history = MlflowClient(uri).get_metric_history(child.run_id, "val_loss")
    assert [m.step for m in history] == [100, 200] and math.isnan(history[1].value)
    assert sync(tmp_path / "demo", uri)["skipped"] == 1
