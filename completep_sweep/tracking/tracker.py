"""The sweep driver's MLflow tracker: a daemon thread, so tracking never stops or slows a sweep."""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path

from . import default_tracking_uri, reason
from .mirror import sync_trials


_EVERY_ROW = "*"  # queued first: mirror every row already on disk


class Tracker:
    """Mirrors trials into MLflow from a daemon thread, so tracking never stops or slows the sweep.

    The driver writes Parquet first, then calls ``log_trial(trial_id)``. With ``backfill`` the first
    pass mirrors every row already on disk (trials a killed driver finished but never logged); a
    sync logs only what is missing, so this costs one search when nothing is. The first failure
    prints one warning and the tracker stops trying; ``completep-sweep sync`` fills the gap later.
    """

    def __init__(self, results_dir: Path, tracking_uri: str | None = None, *, backfill: bool = True):
        self.results_dir = Path(results_dir)
        self.uri = tracking_uri or default_tracking_uri(self.results_dir.parent)
        self.failed = False
        self._queue: queue.Queue[str | None] = queue.Queue()
        if backfill:
            self._queue.put(_EVERY_ROW)
        self._thread = threading.Thread(target=self._work, name="completep-mlflow", daemon=True)
        self._thread.start()

    def log_trial(self, trial_id: str) -> None:
        """Queue a finished trial (its row and curve already in Parquet); returns at once."""
        if not self.failed:
            self._queue.put(trial_id)

    def close(self, timeout: float = 10) -> None:
        """Flush what can be flushed within ``timeout`` seconds; never raises."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive() and not self.failed:
            print(f"MLflow sync of {self.results_dir} still running after {timeout:g} s; rows are safe in "
                  f"Parquet; run `completep-sweep sync {self.results_dir}` later", file=sys.stderr)

    def _work(self) -> None:
        done = False
        while not done and not self.failed:
            batch = {self._queue.get()}
            while not self._queue.empty():  # drain: one sync for every trial finished meanwhile
                batch.add(self._queue.get())
            done = None in batch
            batch.discard(None)
            if batch:
                try:
                    sync_trials(self.results_dir, self.uri, None if _EVERY_ROW in batch else batch, None)
                except Exception as e:  # noqa: BLE001 - whatever MLflow does, the sweep goes on
                    self.failed = True
                    print(f"warning: MLflow at {self.uri} unreachable: {reason(e)}; rows are safe in Parquet; "
                          f"run `completep-sweep sync {self.results_dir}` later", file=sys.stderr)
