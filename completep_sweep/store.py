"""Parquet results: one file per trial, written atomically by the driver only.

Layout under ``results/<sweep>/``:
  trials/<trial_id>.parquet   one row: a finished trial (status ok or diverged); its presence is the
                              "done" mark, so ``completed_ids()`` is a directory listing
  errors/<trial_id>.parquet   one row: a trial that errored after retries (re-run by the next run)
  curves/<trial_id>.parquet   its loss curve; written before the trial row, so a row implies a curve
  spec.toml                   the sweep file of the latest run
  runs/<started_at>.json      one record per `run`: wall time, trials run, concurrency
  looks/<digest>.json         a decided search's looks: what each said of the rows it read
                              (search/looks.py), so a later release replays its rounds
  quarantine/                 files that could not be read as what their name says (moved aside)
  .driver.lock                held (flock; on object storage a heartbeat) by the one driver that writes
  live.json                   the trials in flight (step, latest val loss), for `status --watch`;
                              rewritten by the driver as they report, removed when it ends

Writers use a hidden temporary name and ``os.replace``; readers skip hidden files and deduplicate on
trial_id (Ray may deliver a result more than once after restores). A file that does not read, or
reads as something else (another schema, another trial), is moved to ``quarantine/`` with one
warning, and its trial counts as pending: the next run computes it again. On object storage
(``ResultStore("s3://bucket/prefix/<sweep>")``) the same files are objects, each written in one PUT
(store_fs.py: how, and which files stay local).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .row_check import id_mismatch, wrong_types
from .store_fs import ObjectPath, cache_folder, is_uri, open_location
from .store_lock import LockedError, flock_folder, hold, live_driver
from .trial import ADDED_DEFAULTS, CURVE_COLUMNS, ROW_COLUMNS, TrialResult

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
# Derived from the trial schema (trial.py); nothing here lists a column by hand.
TRIAL_SCHEMA = pa.schema([pa.field(name, _ARROW[kind]) for name, kind in ROW_COLUMNS.items()])
CURVE_SCHEMA = pa.schema([pa.field(name, _ARROW[kind]) for name, kind in CURVE_COLUMNS.items()])
# Columns every release has written; later additions (ADDED_DEFAULTS) may be missing from old files.
REQUIRED_ROW_COLUMNS = frozenset(ROW_COLUMNS) - set(ADDED_DEFAULTS)
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: result files get the mode any other file of the user gets
__all__ = ["LockedError", "ResultStore", "sweep_store", "write_atomic", "write_text"]


def write_atomic(path: Path | ObjectPath, write) -> None:
    """``write(tmp_path)`` then rename into place; a crash leaves only a hidden temp file. On object
    storage (no rename) the file is written locally and sent in one PUT: it appears whole or not at all."""
    if isinstance(path, ObjectPath):
        return path.write_with(write)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared and read
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
    path = path if isinstance(path, ObjectPath) else Path(path)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _write_table(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


class ResultStore:
    """The results folder of one sweep: a local folder, or a URI on object storage (s3://, gs://)."""

    def __init__(self, root: Path | str, *, read_only: bool = False):
        self.remote = is_uri(root)
        # Where the rows live. On object storage, ``root`` is a local cache folder for what must be a
        # local file (the Optuna study, the report before its upload, MLflow's default store).
        self.folder = open_location(root) if self.remote else Path(root)
        self.root = cache_folder(self.folder) if self.remote else self.folder
        # Read commands: a bad file is skipped with a warning, never moved; no index is written.
        self.read_only = read_only
        self.trials_dir = self.folder / "trials"
        self.errors_dir = self.folder / "errors"
        self.curves_dir = self.folder / "curves"
        self._live_written = (0.0, set())

    @property
    def location(self) -> str:
        """The folder as messages and commands name it (the URI on object storage)."""
        return str(self.folder)

    @property
    def results_root(self) -> Path | str:
        """What holds this sweep's folder and its neighbours (``--results``)."""
        return str(self.folder.parent) if self.remote else self.root.parent

    def exists(self) -> bool:
        return self.folder.is_dir()

    @property
    def spec_path(self) -> Path | ObjectPath:
        return self.folder / "spec.toml"

    def write_spec(self, text: str) -> None:
        write_text(self.spec_path, text)

    def read_spec(self) -> str | None:
        """The recorded sweep file's text (None when the folder has none). Commands read it once,
        through ``results.open_results``, and pass the parsed sweep on."""
        try:
            return self.spec_path.read_text()
        except FileNotFoundError:
            return None

    def write_result(self, result: TrialResult) -> None:
        self.write_row(result.row(), [vars(p) for p in result.curve])

    def write_row(self, row: dict, curve: Iterable[dict]) -> None:
        """Record one finished trial: curve first, then the row (the commit point)."""
        trial_id = row["trial_id"]
        if row["status"] == "error":
            _write_table(self.errors_dir / f"{trial_id}.parquet", [row], TRIAL_SCHEMA)
            return
        _write_table(
            self.curves_dir / f"{trial_id}.parquet",
            [{"trial_id": trial_id, **p} for p in curve],
            CURVE_SCHEMA,
        )
        try:
            _write_table(self.trials_dir / f"{trial_id}.parquet", [row], TRIAL_SCHEMA)
        except OSError:  # a full disk between the two: no curve without its row is left behind
            (self.curves_dir / f"{trial_id}.parquet").unlink(missing_ok=True)
            raise
        (self.errors_dir / f"{trial_id}.parquet").unlink(missing_ok=True)

    def record_run(self, record: dict) -> Path:
        """Keep one JSON file per `run` invocation beside the rows: written when the run starts (the
        spec hash and what its sweep file resolved to: ``around`` centres, data fingerprints) and
        rewritten, same name, when it ends (how long, what ran)."""
        path = self.folder / "runs" / f"{record['started_at'].replace(':', '')}.json"
        return write_text(path, json.dumps(record, indent=1))

    def runs(self) -> list[dict]:
        """The run records, oldest first (an unreadable one is skipped: it is a log, not a result)."""
        runs_dir = self.folder / "runs"
        records = []
        for p in (
            sorted(q for q in runs_dir.glob("*.json") if not q.name.startswith("."))
            if runs_dir.is_dir()
            else []
        ):
            try:
                records.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                sys.stderr.write(f"warning: run record {p} is unreadable; skipped\n")
        return records

    def completed_ids(self) -> set[str]:
        """Trials whose row and curve both read (ok or diverged): a re-run skips exactly these.

        Each file is checked once: the (size, mtime) of files already checked are kept in a hidden
        index, so a large sweep lists its finished trials in a directory scan.
        """
        index_path = self.root / ".checked.json"
        try:
            checked = json.loads(index_path.read_text())
        except (OSError, ValueError):
            checked = {}
        done, now = set(), {}
        curves = {p.name: p for p in self._files(self.curves_dir)}  # on object storage: one listing
        for row_file in self._files(self.trials_dir):
            pair = (row_file, curves.get(row_file.name, self.curves_dir / row_file.name))
            marks = {}
            for path in pair:
                try:
                    stat = path.stat()
                    marks[f"{path.parent.name}/{path.name}"] = [stat.st_size, stat.st_mtime_ns]
                except OSError:
                    break
            if len(marks) < 2:  # a row implies a curve: without it the trial is incomplete
                self._quarantine(row_file, "its curve file is missing")
                continue
            if all(checked.get(k) == v for k, v in marks.items()) or all(
                self._read(path, columns=["trial_id"]) is not None for path in pair
            ):
                done.add(row_file.stem)
                now.update(marks)
        if now != checked and not self.read_only:
            try:
                write_text(index_path, json.dumps(now))
            except OSError:
                pass  # read-only results: check again next time
        return done

    def load(self, include_errors: bool = True, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Trial rows as one DataFrame, one row per trial_id (a finished row beats an error row);
        all of them, or only those of ``ids``."""
        dirs = (self.trials_dir, self.errors_dir) if include_errors else (self.trials_dir,)
        frames = [f for d in dirs for f in map(self._read, self._files(d, ids)) if f is not None]
        if not frames:
            return TRIAL_SCHEMA.empty_table().to_pandas()
        df = pd.concat(frames, ignore_index=True)
        for name, default in ADDED_DEFAULTS.items():  # rows of an earlier release lack later fields
            df[name] = df[name].fillna(default) if name in df else default
        return df.drop_duplicates("trial_id", keep="first").reset_index(drop=True)

    def load_curves(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        frames = [f for f in map(self._read, self._files(self.curves_dir, ids)) if f is not None]
        if not frames:
            return CURVE_SCHEMA.empty_table().to_pandas()
        df = pd.concat(frames, ignore_index=True)
        return (
            df.drop_duplicates(["trial_id", "step"], keep="last")
            .sort_values(["trial_id", "step"])
            .reset_index(drop=True)
        )

    # ---------------------------------------------------------------- reading, defensively

    @staticmethod
    def _files(directory: Path, ids: Iterable[str] | None = None) -> list[Path]:
        """Visible Parquet files of ``directory``, or only those of ``ids`` (one file per trial)."""
        if isinstance(directory, ObjectPath):  # one listing, not a request per file
            wanted = None if ids is None else {f"{i}.parquet" for i in ids}
            found = [p for p in directory.glob("*.parquet") if not p.name.startswith(".")]
            return sorted(p for p in found if wanted is None or p.name in wanted)
        if not directory.is_dir():
            return []
        if ids is None:
            return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))
        return [p for p in (directory / f"{i}.parquet" for i in sorted(ids)) if p.is_file()]

    def _read(self, path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
        """The file as a DataFrame, or None after moving it to quarantine/ (it is not what its name says)."""
        curve = path.parent == self.curves_dir
        try:
            data = None if isinstance(path, Path) else path.read_bytes()  # one GET for both reads below
            source = (lambda: path) if data is None else (lambda: pa.BufferReader(data))
            schema = pq.read_schema(source())
            missing = (set(CURVE_COLUMNS) if curve else REQUIRED_ROW_COLUMNS) - set(schema.names)
            if missing:
                raise ValueError(
                    f"not a {'curve' if curve else 'trial'} file: no column(s) {', '.join(sorted(missing))}"
                )
            if not curve and (reason := wrong_types(schema)):
                raise ValueError(reason)
            df = pq.read_table(source(), columns=columns).to_pandas()
            ids = set(df["trial_id"]) if "trial_id" in df else {path.stem}
            if ids - {path.stem} or (not curve and len(df) != 1):
                raise ValueError(
                    f"holds {len(df)} row(s) of trial(s) {', '.join(sorted(ids))}, not one of {path.stem}"
                )
            if not curve and columns is None and (reason := id_mismatch(df.iloc[0])):
                raise ValueError(reason)
        except (OSError, ValueError, pa.ArrowException) as e:
            self._quarantine(path, str(e).splitlines()[0] if str(e) else type(e).__name__)
            return None
        return df

    def _quarantine(self, path: Path, reason: str) -> None:
        """Move a bad file (and, for a trial, its row and curve together) aside, with one warning."""
        trial_id = path.stem
        if self.read_only:
            sys.stderr.write(f"warning: {path} is skipped: {reason}; `completep-sweep run` sets it aside\n")
            return
        moved = []
        for directory in (
            (self.trials_dir, self.curves_dir) if path.parent != self.errors_dir else (self.errors_dir,)
        ):
            source = directory / f"{trial_id}.parquet"
            if not source.exists():
                continue
            target = self.folder / "quarantine" / directory.name / f"{trial_id}.{time.time_ns()}.parquet"
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                source.replace(target)  # os.replace; on object storage a copy, then a delete
                moved.append(target)
            except OSError:
                pass  # a read-only folder: the file stays, is skipped, and the warning says so
        where = f"moved to {moved[0].parent.parent}" if moved else "left in place (folder not writable)"
        sys.stderr.write(
            f"warning: {path} is unreadable ({reason}); {where}; trial {trial_id} counts as pending "
            "and the next run computes it again\n"
        )

    # ---------------------------------------------------------------- trials in flight

    @property
    def live_path(self) -> Path | ObjectPath:
        return self.folder / "live.json"

    def write_live(self, trials: dict[str, dict]) -> None:
        """The driver's view of its running trials (replaced whole, so a reader never sees half)."""
        last, ids = self._live_written
        if self.remote and set(trials) == ids and time.monotonic() - last < 2:
            return  # a PUT per eval would slow Tune's loop; the same trials' progress waits 2 s
        self._live_written = (time.monotonic(), set(trials))
        record = {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.time(), "trials": trials}
        write_text(self.live_path, json.dumps(record))

    def read_live(self) -> dict[str, dict]:
        """The running trials, or {} when no driver is alive to vouch for them (a killed driver
        leaves its last live.json behind: its trials are not running any more)."""
        try:
            record = json.loads(self.live_path.read_text())
        except (OSError, ValueError):
            return {}
        return record.get("trials", {}) if live_driver(record, self.folder) else {}

    # ---------------------------------------------------------------- one driver at a time

    def lock(self, command: str = ""):
        """Hold the folder for one driver (a context manager). Raises LockedError naming the live
        holder; a lock left by a dead driver is free (store_lock.py: flock, or a lock object with a
        heartbeat on object storage)."""
        if self.remote:
            return hold(self.folder, command)
        return flock_folder(self.root, command, 0o666 & ~_UMASK)


def sweep_store(results_root: Path | str, name: str, *, read_only: bool = False) -> ResultStore:
    """The store of sweep ``name`` under ``--results`` (a folder, or a URI on object storage)."""
    if is_uri(str(results_root)):
        return ResultStore(f"{str(results_root).rstrip('/')}/{name}", read_only=read_only)
    return ResultStore(Path(results_root) / name, read_only=read_only)
