"""Rows that read as something else (issue 17): a loss stored as text, a value edited under the same
trial_id. ``run`` sets such a row aside and computes its trial again; read commands skip it with a
warning and never move a file."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from completep_sweep.results import open_results
from completep_sweep.store import ResultStore


def _rewrite(path, **changes):
    table = pq.read_table(path)
    for name, value in changes.items():
        column = pa.array([value] * len(table))
        table = table.set_column(table.schema.get_field_index(name), name, column)
    pq.write_table(table, path)


@pytest.mark.parametrize(
    "change, why",
    [
        ({"final_val_loss": "2.5"}, "column final_val_loss holds string"),
        ({"lr": 2.0**-2}, "not to its trial_id"),  # a hand-edited lr would move an optimum
        ({"depth": 0}, "does not read"),  # a config that cannot be a trial
    ],
    ids=["loss as text", "lr edited", "impossible depth"],
)
def test_a_row_that_lies_is_skipped_by_readers_and_set_aside_by_run(release_fixture, cli, change, why):
    before = open_results(ResultStore(release_fixture, read_only=True)).rows
    victim = sorted((release_fixture / "trials").glob("*.parquet"))[3]
    _rewrite(victim, **change)
    for command in (
        ["status", release_fixture],
        ["report", release_fixture, "--no-mlflow", "--json"],
        ["export", release_fixture, "--format", "csv"],
        ["validate", release_fixture / "spec.toml", "--results", release_fixture.parent],
    ):
        code, _, err = cli(*command)
        assert code == 0 and "Traceback" not in err, (command, err)
        assert victim.name in err and why in err, (command, err)
    assert victim.exists()  # read commands never move a file
    assert not (release_fixture / "quarantine").exists()
    after = open_results(ResultStore(release_fixture, read_only=True)).rows
    assert len(after) == len(before) - 1 and after["lr"].max() == before["lr"].max()
    assert victim.stem not in set(after["trial_id"])
    # What `run` does first: the row goes to quarantine/ and its trial becomes pending.
    store = ResultStore(release_fixture)
    store.completed_ids()
    assert victim.stem not in set(store.load()["trial_id"])
    assert not victim.exists() and (release_fixture / "quarantine" / "trials").is_dir()
    assert victim.stem not in store.completed_ids()
