"""A command opens a sweep's results once and passes them on: reads counted, recorded ``around``
centres reused, and MLflow's curves of the report's own loss."""

import math
from pathlib import Path

import pytest

from completep_sweep.parameterization import display_name
from completep_sweep.results import best_value_resolver, open_results
from completep_sweep.store import ResultStore
from completep_sweep.sweep import parse_sweep
from completep_sweep.trial import CurvePoint, TrialResult

GRID = """
name = "{name}"
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
depth = [2, 4]
lr = {lrs}
seed = [0, 1]
[model_overrides]
seq_len = 32
[train]
steps = 20
batch_size = 4
"""


def _loss(config, *, train: bool = False) -> float:
    """A basin in log2(lr) with its minimum at 2^-7, offset per depth and seed; the train loss sits
    apart and has its minimum at 2^-5, so a curve of one loss is never a curve of the other."""
    x = math.log2(config.lr)
    if train:
        return 2.5 + 0.05 * (x + 5) ** 2
    return 3.0 + 0.04 * (x + 7) ** 2 - 0.01 * config.depth + 0.001 * config.seed


def finished(config, val: float | None = None) -> TrialResult:
    val = _loss(config) if val is None else val
    curve = (
        CurvePoint(step=10, tokens=640, train_loss=val + 0.2, val_loss=val + 0.1, lr=config.lr),
        CurvePoint(step=20, tokens=1280, train_loss=_loss(config, train=True), val_loss=val, lr=config.lr),
    )
    return TrialResult(
        config=config,
        status="ok",
        final_train_loss=_loss(config, train=True),
        final_val_loss=val,
        diverged_at_step=None,
        steps_done=20,
        clip_fraction=0.0,
        flops=1e9,
        n_params=1000,
        wall_time_s=1.0,
        device="cpu",
        worker="",
        started_at="2026-01-01T00:00:00+00:00",
        code_version="test",
        curve=curve,
    )


def write_sweep(results: Path, text: str, resolve=None) -> ResultStore:
    """A finished sweep as `run` leaves it: spec.toml, and a row and a curve per trial."""
    sweep = parse_sweep(text, resolve=resolve)
    store = ResultStore(results / sweep.name)
    store.write_spec(text)
    for config in sweep.trials:
        store.write_result(finished(config))
    return store


class Reads:
    """Counts reads of spec.toml and of each trial file through the store's own readers, and fails
    on any other read of spec.toml (a direct read_text or open)."""

    def __init__(self, monkeypatch, store: ResultStore):
        self.spec, self.files = 0, {}
        spec_path = store.spec_path.resolve()
        read_spec, read = ResultStore.read_spec, ResultStore._read
        real_read_text, real_open = Path.read_text, Path.open

        def counted_spec(this):
            if this.root.resolve() == store.root.resolve():
                self.spec += 1
            return read_spec(this)

        def counted_read(this, path, columns=None):
            self.files[str(path)] = self.files.get(str(path), 0) + 1
            return read(this, path, columns)

        def guarded(real):
            def method(this, *a, **k):
                if this.resolve() == spec_path and not getattr(self, "_inside", False):
                    raise AssertionError(f"spec.toml read outside ResultStore.read_spec ({real.__name__})")
                return real(this, *a, **k)

            return method

        def inside_spec(this):
            self._inside = True
            try:
                return counted_spec(this)
            finally:
                self._inside = False

        monkeypatch.setattr(ResultStore, "read_spec", inside_spec)
        monkeypatch.setattr(ResultStore, "_read", counted_read)
        monkeypatch.setattr(Path, "read_text", guarded(real_read_text))
        monkeypatch.setattr(Path, "open", guarded(real_open))


def test_report_reads_the_spec_once_and_each_trial_file_once(tmp_path, cli, monkeypatch):
    results = tmp_path / "results"
    store = write_sweep(results, GRID.format(name="once", lrs=[2.0**k for k in range(-9, -4)]))
    trial_files = sorted(str(p) for p in store.trials_dir.glob("*.parquet"))
    reads = Reads(monkeypatch, store)
    uri = f"sqlite:///{results / 'mlflow.db'}"
    code, out, err = cli("report", store.root, "--tracking-uri", uri)
    assert code == 0, err
    assert "MLflow" not in err  # the sync succeeded (a failure warns and names MLflow)
    assert reads.spec == 1
    rows = {p: n for p, n in reads.files.items() if "/trials/" in p}
    assert sorted(rows) == trial_files and set(rows.values()) == {1}
    curves = {p: n for p, n in reads.files.items() if "/curves/" in p}
    assert set(curves.values()) <= {1}  # each read once, only for MLflow children that lack points


def test_status_and_export_read_the_spec_once(tmp_path, cli, monkeypatch):
    results = tmp_path / "results"
    store = write_sweep(results, GRID.format(name="once", lrs=[2.0**k for k in range(-9, -4)]))
    reads = Reads(monkeypatch, store)
    assert cli("status", store.root)[0] == 0
    assert reads.spec == 1 and set(reads.files.values()) == {1}
    assert cli("export", store.root, "--target-depth", 16, "--format", "csv")[0] == 0
    assert reads.spec == 2


TRANSFER = """
name = "transfer"
model = "tiny"
parameterizations = ["completep"]
[grid]
depth = [4, 8]
lr = { around = "base-tune", octaves = 1, step = 1 }
[model_overrides]
seq_len = 32
[train]
steps = 20
batch_size = 4
"""


def test_extending_the_base_sweep_later_keeps_the_transfer_sweeps_rows_current(tmp_path, cli):
    results = tmp_path / "results"
    base_text = GRID.format(name="base-tune", lrs=[2.0**-8, 2.0**-7, 2.0**-6])
    write_sweep(results, base_text)  # best at 2^-7
    spec = tmp_path / "transfer.toml"
    spec.write_text(TRANSFER)
    transfer = write_sweep(results, TRANSFER, resolve=best_value_resolver(results))
    assert {c.lr for c in open_results(transfer).sweep.trials} == {2.0**-8, 2.0**-7, 2.0**-6}
    # `run` on the finished transfer sweep starts nothing, and records what its file resolved to.
    code, _, err = cli("run", spec, "--results", results, "--no-mlflow")
    assert code == 0, err
    assert transfer.runs()[-1]["resolved"]["around"] == {"base-tune:lr": 2.0**-7}

    # base-tune is extended afterwards, and its best moves to a new value, 2^-4.
    base = ResultStore(results / "base-tune")
    extended = base_text.replace("lr = [", f"lr = [{2.0**-4}, ")
    base.write_spec(extended)
    for config in parse_sweep(extended).trials:
        if config.lr == 2.0**-4:
            base.write_result(finished(config, val=2.0))

    after = open_results(transfer)
    assert after.pending == () and after.stale.empty and len(after.rows) == 6
    code, out, _ = cli("status", transfer.root)
    assert code == 0 and "0 pending" in out and "stale" not in out

    # Without the run record the centre would be looked up afresh and every row would turn stale.
    for record in (transfer.root / "runs").iterdir():
        record.unlink()
    assert len(open_results(transfer).stale) == 6


@pytest.mark.parametrize(
    "loss, other", [("final_train_loss", "final_val_loss"), ("final_val_loss", "final_train_loss")]
)
def test_mlflow_curves_follow_report_loss(tmp_path, cli, loss, other):
    from mlflow import MlflowClient

    results = tmp_path / "results"
    store = write_sweep(results, GRID.format(name="losses", lrs=[2.0**k for k in range(-9, -3)]))
    uri = f"sqlite:///{results / 'mlflow.db'}"
    rows = open_results(store).rows
    assert cli("report", store.root, "--tracking-uri", uri, "--loss", other)[0] == 0
    assert cli("report", store.root, "--tracking-uri", uri, "--loss", loss)[0] == 0

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("losses")
    found = client.search_runs([experiment.experiment_id], "tags.`completep.role` = 'curve'")
    curves = [r for r in found if "depth" in r.data.params]  # beside them: each optimum vs depth
    assert len(curves) == 4  # 2 parameterizations x 2 depths, those of the latest report only
    assert len(found) == 6 and {r.info.run_name for r in found} >= {"µP depth 2 width 64"}
    for run in curves:
        p = next(k for k in ("mup", "completep") if display_name(k) == run.data.params["parameterization"])
        depth = int(run.data.params["depth"])
        history = client.get_metric_history(run.info.run_id, f"{display_name(p)}: {loss} vs log2 lr")
        xs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "log2 lr")}
        line = rows[rows["parameterization"].eq(p) & rows["depth"].eq(depth)]
        expected = line.groupby("lr")[loss].mean()
        assert len(history) == len(expected)
        for m in history:
            assert m.value == pytest.approx(expected[2.0 ** xs[m.step]], abs=1e-9)
    assert f"loss: {loss}" in experiment.tags["mlflow.note.content"]
