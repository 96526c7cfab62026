"""A damaged or emptied Optuna study file (issue 17): the rows are the record, the study an index.

Read commands name the file, read the trials from their rows and write nothing; ``run`` sets a
damaged file aside and rebuilds the study from the rows, and an emptied or deleted one is refilled,
so no earlier row turns stale and every trial still runs exactly once."""

from __future__ import annotations

import hashlib
import math

import pytest

from completep_sweep.results import open_results
from completep_sweep.search import make_plan
from completep_sweep.store import ResultStore
from completep_sweep.sweep import parse_sweep

OPTUNA = """name = "tpe"
model = "tiny"
parameterizations = ["completep"]
[grid]
lr = { log2_range = [-10, -4] }
[train]
steps = 40
[search]
method = "optuna"
n_trials = 6
"""


def loss(lr: float) -> float:
    return 3.0 + 0.05 * (math.log2(lr) + 7.0) ** 2


def run_plan(store: ResultStore, make_result, until: int | None = None) -> list[str]:
    """What `run` does, without Ray: plan from the rows, run one trial at a time, write each row."""
    sweep = parse_sweep(OPTUNA)
    store.write_spec(OPTUNA)
    plan = make_plan(sweep, store.load(), store.root)
    ran = []
    while not plan.finished and (until is None or len(ran) < until):
        config = plan.take()
        result = make_result(
            **{k: v for k, v in config.to_dict().items() if k != "lr"},
            lr=config.lr,
            final_val_loss=loss(config.lr),
        )
        store.write_result(result)
        plan.record(config, "ok", result.final_val_loss)
        ran.append(config.trial_id)
    return ran


def _truncate(db):
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)


def _empty(db):
    db.write_bytes(b"")


def _delete(db):
    db.unlink()


@pytest.mark.parametrize("damage", [_truncate, _empty, _delete], ids=["truncated", "emptied", "deleted"])
def test_a_damaged_study_is_read_from_its_rows_and_rebuilt_by_run(tmp_path, make_result, cli, damage):
    store = ResultStore(tmp_path / "tpe")
    first = run_plan(store, make_result, until=3)
    db = store.root / "optuna.db"
    for p in store.root.glob("optuna.db-*"):
        p.unlink()
    damage(db)
    state = db.read_bytes() if db.exists() else None
    for command in (
        ["status", store.root],
        ["report", store.root, "--json", "--no-mlflow"],
        ["validate", store.root / "spec.toml", "--results", tmp_path],
    ):
        code, out, err = cli(*command)
        assert code == 0 and "Traceback" not in err, (command, err)
        if damage is _truncate:
            assert "optuna.db does not read" in err and "rows, which are intact" in err, err
    assert (db.read_bytes() if db.exists() else None) == state  # read commands wrote nothing
    assert not list(store.root.glob("optuna.db.damaged-*"))
    results = open_results(ResultStore(store.root, read_only=True))
    assert set(results.rows.trial_id) == set(first) and results.stale.empty  # no row turned stale

    rest = run_plan(store, make_result)  # `run` again: rebuilt, and only the missing trials run
    assert len(rest) == 3 and not set(rest) & set(first)
    assert len(store.load()) == 6
    assert bool(list(store.root.glob("optuna.db.damaged-*"))) == (damage is _truncate)
    results = open_results(ResultStore(store.root, read_only=True))
    assert len(results.rows) == 6 and results.stale.empty and results.pending == ()
    assert hashlib.sha256(db.read_bytes()).hexdigest()  # a study file again
