import math

import pandas as pd
import pytest

from completep_sweep.store import TRIAL_SCHEMA, ResultStore
from completep_sweep.trial import TrialConfig, TrialResult


@pytest.fixture
def result(make_result):
    return lambda lr=0.01, status="ok", **kw: make_result(
        lr=lr, status=status, final_val_loss=2.6 if status == "ok" else None, **kw
    )


def test_roundtrip_and_completed_ids(tmp_path, result):
    store = ResultStore(tmp_path / "s")
    a, b = result(0.01, worker="node1"), result(0.02, status="diverged")
    store.write_result(a)
    store.write_result(b)
    assert store.completed_ids() == {a.config.trial_id, b.config.trial_id}
    df = store.load()
    assert len(df) == 2 and set(df.status) == {"ok", "diverged"}
    row = df.set_index("trial_id").loc[a.config.trial_id]
    assert row.lr == 0.01 and row.width == 64 and row.worker == "node1" and row.final_val_loss == 2.6
    assert math.isnan(df.set_index("trial_id").loc[b.config.trial_id].final_val_loss)
    assert pd.isna(row.alpha) is False and row.alpha == 1.0
    assert list(df.columns) == TRIAL_SCHEMA.names
    curves = store.load_curves()
    assert len(curves) == 4 and list(curves[curves.trial_id == a.config.trial_id].step) == [10, 20]


def test_error_rows_are_kept_apart_and_retried(tmp_path, result):
    store = ResultStore(tmp_path / "s")
    config = TrialConfig(sweep="s", lr=0.5)
    store.write_result(TrialResult.failed(config, "RuntimeError: boom"))
    assert store.completed_ids() == set()  # an error is re-run next time
    assert store.load().status.tolist() == ["error"]
    store.write_result(result(0.5))
    assert store.completed_ids() == {config.trial_id}
    assert store.load().status.tolist() == ["ok"]  # the error row is gone


def test_readers_ignore_hidden_temp_files_and_duplicates(tmp_path, result):
    store = ResultStore(tmp_path / "s")
    r = result()
    store.write_result(r)
    (store.trials_dir / f".{r.config.trial_id}.parquet.partial").write_bytes(b"garbage")
    (store.trials_dir / ".half.parquet").write_bytes(b"not parquet")
    store.write_result(r)  # delivered twice
    assert len(store.load()) == 1 and len(store.load_curves()) == 2
    assert store.completed_ids() == {r.config.trial_id}


def test_failed_write_leaves_nothing(tmp_path, monkeypatch, result):
    store = ResultStore(tmp_path / "s")
    import completep_sweep.store as mod

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(mod.pq, "write_table", boom)
    with pytest.raises(OSError):
        store.write_result(result())
    assert store.completed_ids() == set()
    assert not any(store.root.rglob("*.parquet")) and not any(p for p in store.root.rglob(".*"))


def test_empty_store(tmp_path):
    store = ResultStore(tmp_path / "nothing")
    assert store.completed_ids() == set() and store.load().empty and store.load_curves().empty
