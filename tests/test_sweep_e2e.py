"""End-to-end sweeps on local Ray (slow): rows, resume, grid extension, divergence, MLflow.

Faults (killed drivers and workers, signals, damaged files) are in test_faults.py."""

import sys

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
    assert (
        "8 ok, 4 diverged, 0 error of the 12 trials of the current sweep; 0 pending"
        in capsys.readouterr().out
    )


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
    assert {
        "params.lr",
        "params.depth",
        "params.parameterization",
        "metrics.final_val_loss",
        "metrics.log2_lr",
    } <= set(runs.columns)
    client = MlflowClient(uri)
    steps = [len(client.get_metric_history(r, "val_loss")) for r in children.run_id]

    assert main(["run", str(spec), "--results", str(results), "--tracking-uri", uri]) == 0  # re-run
    assert main(["sync", str(results / "tracked"), "--tracking-uri", uri]) == 0
    again = _runs(uri, "tracked")
    trial_runs = again[again["tags.completep.role"].isin(["parent", "child"])]
    assert len(trial_runs) == len(runs)  # no twin runs
    curves = again[again["tags.completep.role"] == "curve"]
    lines = curves[curves["params.depth"].notna()]
    assert len(lines) == 2  # one curve run per (parameterization, depth): 2 parameterizations at depth 2
    assert len(curves) - len(lines) == 2  # and one optimum-against-depth run per parameterization
    assert main(["sync", str(results / "tracked"), "--tracking-uri", uri]) == 0
    assert len(_runs(uri, "tracked")) == len(again)  # a second sync adds nothing
    assert [
        len(client.get_metric_history(r, "val_loss")) for r in children.run_id
    ] == steps  # no repeated steps

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
