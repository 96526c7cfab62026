"""Parquet results: one file per trial, written atomically by the driver only.

Layout under ``results/<sweep>/``:
  trials/<trial_id>.parquet   one row: a finished trial (status ok or diverged); its presence is the
                              "done" mark, so ``completed_ids()`` is a directory listing
  errors/<trial_id>.parquet   one row: a trial that errored after retries (re-run by the next run)
  curves/<trial_id>.parquet   its loss curve; written before the trial row, so a row implies a curve
  spec.toml                   the sweep file of the latest run
  runs/<started_at>.json      one record per `run`: wall time, trials run, concurrency

Writers use a hidden temporary name and ``os.replace``; readers skip hidden files and deduplicate on
trial_id (Ray may deliver a result more than once after restores).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .trial import CURVE_COLUMNS, ROW_COLUMNS, TrialResult

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
# Derived from the trial schema (trial.py); nothing here lists a column by hand.
TRIAL_SCHEMA = pa.schema([pa.field(name, _ARROW[kind]) for name, kind in ROW_COLUMNS.items()])
CURVE_SCHEMA = pa.schema([pa.field(name, _ARROW[kind]) for name, kind in CURVE_COLUMNS.items()])


def write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then rename into place; a crash leaves only a hidden temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # on disk before the rename, so a crash never leaves an empty "done" file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself
    finally:
        os.close(dir_fd)


def write_text(path: Path, text: str) -> Path:
    """A text file written atomically (report tables, exports, the spec, run records)."""
    path = Path(path)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _write_table(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _read_dir(directory: Path, ids: Iterable[str] | None = None) -> list[pd.DataFrame]:
    """Every visible Parquet file of ``directory``, or only those of ``ids`` (one file per trial)."""
    if not directory.is_dir():
        return []
    if ids is None:
        files = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))
    else:
        files = [p for p in (directory / f"{i}.parquet" for i in sorted(ids)) if p.is_file()]
    return [pq.read_table(p).to_pandas() for p in files]


class ResultStore:
    """The results folder of one sweep."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.trials_dir = self.root / "trials"
        self.errors_dir = self.root / "errors"
        self.curves_dir = self.root / "curves"

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.toml"

    def write_spec(self, text: str) -> None:
        write_text(self.spec_path, text)

    def write_result(self, result: TrialResult) -> None:
        self.write_row(result.row(), [vars(p) for p in result.curve])

    def write_row(self, row: dict, curve: Iterable[dict]) -> None:
        """Record one finished trial: curve first, then the row (the commit point)."""
        trial_id = row["trial_id"]
        if row["status"] == "error":
            _write_table(self.errors_dir / f"{trial_id}.parquet", [row], TRIAL_SCHEMA)
            return
        _write_table(self.curves_dir / f"{trial_id}.parquet", [{"trial_id": trial_id, **p} for p in curve], CURVE_SCHEMA)
        _write_table(self.trials_dir / f"{trial_id}.parquet", [row], TRIAL_SCHEMA)
        (self.errors_dir / f"{trial_id}.parquet").unlink(missing_ok=True)

    def record_run(self, record: dict) -> Path:
        """Keep one JSON file per `run` invocation (when, how long, what ran) beside the rows."""
        path = self.root / "runs" / f"{record['started_at'].replace(':', '')}.json"
        return write_text(path, json.dumps(record, indent=1))

    def runs(self) -> list[dict]:
        runs_dir = self.root / "runs"
        if not runs_dir.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json")) if not p.name.startswith(".")]

    def completed_ids(self) -> set[str]:
        """Trials with a row (ok or diverged): a re-run skips exactly these."""
        if not self.trials_dir.is_dir():
            return set()
        return {p.stem for p in self.trials_dir.glob("*.parquet") if not p.name.startswith(".")}

    def load(self, include_errors: bool = True, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Trial rows as one DataFrame, one row per trial_id (a finished row beats an error row);
        all of them, or only those of ``ids``."""
        frames = _read_dir(self.trials_dir, ids) + (_read_dir(self.errors_dir, ids) if include_errors else [])
        if not frames:
            return TRIAL_SCHEMA.empty_table().to_pandas()
        df = pd.concat(frames, ignore_index=True)
        return df.drop_duplicates("trial_id", keep="first").reset_index(drop=True)

    def load_curves(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        frames = _read_dir(self.curves_dir, ids)
        if not frames:
            return CURVE_SCHEMA.empty_table().to_pandas()
        df = pd.concat(frames, ignore_index=True)
        return df.drop_duplicates(["trial_id", "step"], keep="last").sort_values(["trial_id", "step"]).reset_index(drop=True)
