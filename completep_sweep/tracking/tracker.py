"""The sweep driver's MLflow tracker: a daemon thread, so tracking never stops or slows a sweep."""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path

from ..store import ResultStore
from . import default_tracking_uri, reason
from .mirror import store_curves, sync_rows


class Tracker:
    """Mirrors trials into MLflow from a daemon thread, so tracking never stops or slows the sweep.

    The driver writes Parquet first, then hands the same row and curve to ``log_trial``: the tracker
    re-reads nothing. ``backfill`` is the finished rows the command already loaded (trials a killed
    driver finished but never logged); a sync logs only what is missing, reading a curve file only
    for a child that lacks points, so this costs one search when nothing is. ``spec_text`` is the
    sweep file being run (the parent run's params). The first failure prints one warning and the
    tracker stops trying; ``completep-sweep sync`` fills the gap later.
    """

    def __init__(
        self,
        results_dir: Path | ResultStore,
        tracking_uri: str | None = None,
        *,
        spec_text: str | None = None,
        backfill: list[dict] | None = None,
    ):
        # The driver's own store (on object storage MLflow's default store is in its local cache).
        self.store = results_dir if isinstance(results_dir, ResultStore) else ResultStore(results_dir)
        self.results_dir = self.store.location
        self.uri = tracking_uri or default_tracking_uri(self.store.root.parent)
        self.spec_text = spec_text
        self.failed = False
        self._queue: queue.Queue[tuple[dict, list[dict] | None] | None] = queue.Queue()
        for row in backfill or ():
            self._queue.put((row, None))  # its curve is read from disk, and only if MLflow lacks it
        self._thread = threading.Thread(target=self._work, name="completep-mlflow", daemon=True)
        self._thread.start()

    def log_trial(self, row: dict, curve: list[dict]) -> None:
        """Queue a finished trial (already in Parquet): its row and curve points; returns at once."""
        if not self.failed and row.get("status") in ("ok", "diverged"):
            self._queue.put((row, list(curve)))

    def close(self, timeout: float = 10) -> None:
        """Flush what can be flushed within ``timeout`` seconds; never raises."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive() and not self.failed:
            print(
                f"MLflow sync of {self.results_dir} still running after {timeout:g} s; rows are safe in "
                f"Parquet; run `completep-sweep sync {self.results_dir}` later",
                file=sys.stderr,
            )

    def _work(self) -> None:
        done = False
        while not done and not self.failed:
            batch = [self._queue.get()]
            while not self._queue.empty():  # drain: one sync for every trial finished meanwhile
                batch.append(self._queue.get())
            done = None in batch
            items = {row["trial_id"]: (row, curve) for row, curve in filter(None, batch)}
            if items:
                try:
                    sync_rows(
                        self.uri,
                        self.store,
                        [row for row, _ in items.values()],
                        self._curves(items),
                        spec_text=self.spec_text,
                    )
                except Exception as e:  # noqa: BLE001 - whatever MLflow does, the sweep goes on
                    self.failed = True
                    print(
                        f"warning: MLflow at {self.uri} unreachable: {reason(e)}; rows are safe in Parquet; "
                        f"run `completep-sweep sync {self.results_dir}` later",
                        file=sys.stderr,
                    )

    def _curves(self, items: dict[str, tuple[dict, list[dict] | None]]):
        """The curves the driver handed over; from disk only for backfilled rows."""
        from_disk = store_curves(self.store)

        def curves(ids: list[str]) -> dict[str, list[dict]]:
            known = {i: items[i][1] for i in ids if items[i][1] is not None}
            missing = [i for i in ids if i not in known]
            return {**known, **(from_disk(missing) if missing else {})}

        return curves
