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
import typing
from pathlib import Path
from typing import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .trial import TrialConfig, TrialResult

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(annotation) -> pa.DataType:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return _ARROW[args[0] if args else annotation]


def _trial_schema() -> pa.Schema:
    hints = typing.get_type_hints(TrialConfig)
    config = [pa.field(name, _arrow_type(hints[name])) for name in TrialConfig.field_names()]
    result = [
        ("alpha", pa.float64()), ("tokens", pa.int64()), ("status", pa.string()),
        ("final_train_loss", pa.float64()), ("final_val_loss", pa.float64()),
        ("diverged_at_step", pa.int64()), ("steps_done", pa.int64()), ("clip_fraction", pa.float64()),
        ("flops", pa.float64()), ("n_params", pa.int64()), ("wall_time_s", pa.float64()),
        ("device", pa.string()), ("worker", pa.string()), ("started_at", pa.string()),
        ("code_version", pa.string()), ("error", pa.string()),
    ]
    return pa.schema([pa.field("trial_id", pa.string()), *config, *(pa.field(n, t) for n, t in result)])


TRIAL_SCHEMA = _trial_schema()
CURVE_SCHEMA = pa.schema([
    ("trial_id", pa.string()), ("step", pa.int64()), ("tokens", pa.int64()),
    ("train_loss", pa.float64()), ("val_loss", pa.float64()), ("lr", pa.float64()),
])


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


def _write_table(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _read_dir(directory: Path) -> list[pd.DataFrame]:
    if not directory.is_dir():
        return []
    files = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))
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
        write_atomic(self.spec_path, lambda tmp: Path(tmp).write_text(text))

    def write_result(self, result: TrialResult, worker: str = "") -> None:
        self.write_row(result.row(), [vars(p) for p in result.curve], worker=worker)

    def write_row(self, row: dict, curve: Iterable[dict], worker: str = "") -> None:
        """Record one finished trial: curve first, then the row (the commit point)."""
        row = {**row, "worker": worker}
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
        write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
        return path

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

    def load(self, include_errors: bool = True) -> pd.DataFrame:
        """All trial rows as one DataFrame, one row per trial_id (a finished row beats an error row)."""
        frames = _read_dir(self.trials_dir) + (_read_dir(self.errors_dir) if include_errors else [])
        if not frames:
            return TRIAL_SCHEMA.empty_table().to_pandas()
        df = pd.concat(frames, ignore_index=True)
        return df.drop_duplicates("trial_id", keep="first").reset_index(drop=True)

    def load_curves(self) -> pd.DataFrame:
        frames = _read_dir(self.curves_dir)
        if not frames:
            return CURVE_SCHEMA.empty_table().to_pandas()
        df = pd.concat(frames, ignore_index=True)
        return df.drop_duplicates(["trial_id", "step"], keep="last").sort_values(["trial_id", "step"]).reset_index(drop=True)
