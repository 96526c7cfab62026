"""Parquet results: one file per trial, written atomically by the driver only.

Layout under ``results/<sweep>/``:
  trials/<trial_id>.parquet   one row: a finished trial (status ok or diverged); its presence is the
                              "done" mark, so ``completed_ids()`` is a directory listing
  errors/<trial_id>.parquet   one row: a trial that errored after retries (re-run by the next run)
  curves/<trial_id>.parquet   its loss curve; written before the trial row, so a row implies a curve
  spec.toml                   the sweep file of the latest run
  runs/<started_at>.json      one record per `run`: wall time, trials run, concurrency
  quarantine/                 files that could not be read as what their name says (moved aside)
  .driver.lock                held (flock) by the one driver that may write here
  live.json                   the trials in flight (step, latest val loss), for `status --watch`;
                              rewritten by the driver as they report, removed when it ends

Writers use a hidden temporary name and ``os.replace``; readers skip hidden files and deduplicate on
trial_id (Ray may deliver a result more than once after restores). A file that does not read, or
reads as something else (another schema, another trial), is moved to ``quarantine/`` with one
warning, and its trial counts as pending: the next run computes it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .row_check import id_mismatch, wrong_types
from .trial import ADDED_DEFAULTS, CURVE_COLUMNS, ROW_COLUMNS, TrialResult

_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
# Derived from the trial schema (trial.py); nothing here lists a column by hand.
TRIAL_SCHEMA = pa.schema([pa.field(name, _ARROW[kind]) for name, kind in ROW_COLUMNS.items()])
CURVE_SCHEMA = pa.schema([pa.field(name, _ARROW[kind]) for name, kind in CURVE_COLUMNS.items()])
# Columns every release has written; later additions (ADDED_DEFAULTS) may be missing from old files.
REQUIRED_ROW_COLUMNS = frozenset(ROW_COLUMNS) - set(ADDED_DEFAULTS)
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: result files get the mode any other file of the user gets


class LockedError(Exception):
    """Another live driver holds the results folder; the message names it."""


def write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then rename into place; a crash leaves only a hidden temp file."""
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
    path = Path(path)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _write_table(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


class ResultStore:
    """The results folder of one sweep."""

    def __init__(self, root: Path | str, *, read_only: bool = False):
        self.root = Path(root)
        # Read commands: a bad file is skipped with a warning, never moved; no index is written.
        self.read_only = read_only
        self.trials_dir = self.root / "trials"
        self.errors_dir = self.root / "errors"
        self.curves_dir = self.root / "curves"

    @property
    def spec_path(self) -> Path:
        return self.root / "spec.toml"

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
        path = self.root / "runs" / f"{record['started_at'].replace(':', '')}.json"
        return write_text(path, json.dumps(record, indent=1))

    def runs(self) -> list[dict]:
        """The run records, oldest first (an unreadable one is skipped: it is a log, not a result)."""
        runs_dir = self.root / "runs"
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
        for row_file in self._files(self.trials_dir):
            pair = (row_file, self.curves_dir / row_file.name)
            marks = {}
            for path in pair:
                try:
                    marks[f"{path.parent.name}/{path.name}"] = [path.stat().st_size, path.stat().st_mtime_ns]
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
        if not directory.is_dir():
            return []
        if ids is None:
            return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))
        return [p for p in (directory / f"{i}.parquet" for i in sorted(ids)) if p.is_file()]

    def _read(self, path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
        """The file as a DataFrame, or None after moving it to quarantine/ (it is not what its name says)."""
        curve = path.parent == self.curves_dir
        try:
            schema = pq.read_schema(path)
            missing = (set(CURVE_COLUMNS) if curve else REQUIRED_ROW_COLUMNS) - set(schema.names)
            if missing:
                raise ValueError(
                    f"not a {'curve' if curve else 'trial'} file: no column(s) {', '.join(sorted(missing))}"
                )
            if not curve and (reason := wrong_types(schema)):
                raise ValueError(reason)
            df = pq.read_table(path, columns=columns).to_pandas()
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
            target = self.root / "quarantine" / directory.name / f"{trial_id}.{time.time_ns()}.parquet"
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
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
    def live_path(self) -> Path:
        return self.root / "live.json"

    def write_live(self, trials: dict[str, dict]) -> None:
        """The driver's view of its running trials (replaced whole, so a reader never sees half)."""
        record = {"pid": os.getpid(), "host": socket.gethostname(), "updated": time.time(), "trials": trials}
        write_text(self.live_path, json.dumps(record))

    def read_live(self) -> dict[str, dict]:
        """The running trials, or {} when no driver on this host is alive to vouch for them (a killed
        driver leaves its last live.json behind: its trials are not running any more)."""
        try:
            record = json.loads(self.live_path.read_text())
        except (OSError, ValueError):
            return {}
        if record.get("host") == socket.gethostname():
            try:
                os.kill(int(record["pid"]), 0)
            except (ProcessLookupError, ValueError, KeyError):
                return {}
            except PermissionError:
                pass  # alive, another user's
        return record.get("trials", {})

    # ---------------------------------------------------------------- one driver at a time

    @contextmanager
    def lock(self, command: str = ""):
        """Hold the folder for one driver. Raises LockedError naming the live holder; a lock left by
        a dead driver is free (the kernel releases flock with its process)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".driver.lock"
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = path.read_text().strip() or "another process"
                raise LockedError(
                    f"{self.root} is in use by a running driver ({holder}); wait for it to "
                    "finish, or stop it (Ctrl-C, or kill PID) and run again"
                ) from None
            since = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}: {command}".encode())
            except OSError:  # a full disk: leave no empty lock file behind
                if created:
                    path.unlink(missing_ok=True)
                raise
            yield
        finally:
            os.close(fd)  # releases the flock
