"""MLflow mirror of the Parquet results: the only package that imports mlflow (lazily, it is slow).

Parquet is the source of truth; MLflow is a view of it that can always be rebuilt with ``sync``.
- ``mirror``: one idempotent pass that makes MLflow hold what the results folder holds.
- ``tracker``: the sweep driver's background thread that syncs each trial as its row lands.
- ``ui``: the MLflow UI server on 127.0.0.1, pointed at a sweep's runs.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

# MLflow retries an unreachable server with exponential backoff for minutes by default (7 retries,
# 120 s timeout); a sweep must never wait on that. setdefault: a user's explicit choice wins.
_HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or refused a write; the message names the URI and the fix."""


def default_tracking_uri(results_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store beside the sweeps (the file store is refused)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(results_root).resolve() / 'mlflow.db'}"


def connect(uri: str, results_root: Path):
    for key, value in _HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    # MLflow's INFO lines ("Creating initial MLflow database tables...") would break the progress line.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        _create_sqlite(db)
        if db.resolve() == Path(results_root).resolve() / "mlflow.db":
            relocate_artifacts(db, Path(results_root))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)  # fail here, with one clear message, not mid-sync
    except Exception as e:
        raise tracking_error(uri, e) from e
    return client


def relocate_artifacts(db: Path, results_root: Path) -> int:
    """A copied or moved results folder: its store's artifact locations still name the original
    folder's ``mlartifacts/`` (MLflow records absolute URIs), so a sync of the copy would write into
    the original and ``ui`` would serve the original's files. Rewrite them to this folder's own
    ``mlartifacts/``; returns the experiments moved. A store it cannot write is left as it is."""
    import sqlite3
    from contextlib import closing

    here = (results_root.resolve() / "mlartifacts").as_uri()
    moved = 0
    try:
        with closing(sqlite3.connect(db, timeout=30)) as con, con:
            for experiment_id, location in con.execute(
                "SELECT experiment_id, artifact_location FROM experiments"
            ).fetchall():
                cut = (location or "").rfind("/mlartifacts/")
                if cut < 0 or not location.startswith("file:") or location.startswith(here + "/"):
                    continue
                old = location[: cut + len("/mlartifacts")]
                con.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                    (here + location[len(old) :], experiment_id),
                )
                con.execute(
                    "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                    "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                    (here, len(old) + 1, experiment_id, len(old), old),
                )
                moved += 1
    except sqlite3.Error:
        return 0  # read-only, locked or not an MLflow store yet: nothing written through it either
    return moved


def _create_sqlite(db: Path) -> None:
    """A new SQLite store is built under a temporary name and linked into place complete: a driver
    killed while MLflow creates its tables must not leave a half-made store that no sync can open."""
    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not the folder
    from mlflow.tracking import MlflowClient

    tmp = db.with_name(
        f".{db.name}.{os.getpid()}.{time.time_ns()}.new"
    )  # a new name: MLflow caches stores by URI
    tmp.unlink(missing_ok=True)
    try:
        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments(max_results=1)
        os.link(tmp, db)  # atomic, and never over a store another process just made
    except FileExistsError:
        pass
    except Exception as e:
        raise tracking_error(f"sqlite:///{db}", e) from e
    finally:
        tmp.unlink(missing_ok=True)


def reason(e: BaseException) -> str:
    """The first line of the underlying error: MLflow's messages carry whole tracebacks."""
    root = e.__cause__ if isinstance(e, TrackingError) and e.__cause__ else e
    return (str(root).strip().splitlines() or [type(root).__name__])[0][:300]


def tracking_error(uri: str, e: BaseException) -> TrackingError:
    return TrackingError(
        f"MLflow tracking store {uri} failed: {reason(e)}. "
        "Start that server, or fix or unset MLFLOW_TRACKING_URI "
        f"(unset means the local SQLite store results/mlflow.db), then run `completep-sweep sync` again; "
        f"the Parquet results are unaffected."
    )


def sync(
    results_dir: Path | str,
    tracking_uri: str | None = None,
    *,
    report_dir: Path | None = None,
    results=None,
    analysis=None,
    verdicts: dict | None = None,
) -> dict:
    """Mirror one sweep's results (``results/<sweep>``) into MLflow; returns created/updated/skipped counts.

    ``results``: the command's ``SweepResults`` (opened here only when not given); ``analysis`` and
    ``verdicts``: the report's own, so the transfer curves are of the report's loss. Without them
    the last report's verdicts (``report_dir/verdict.json``) say which loss; else final_val_loss.
    ``report_dir`` defaults to ``results_dir/report``; its files and spec.toml become parent artifacts.
    ``results_dir`` may be a URI on object storage: the default store and report are then those of its
    local cache folder (store_fs.py). Raises TrackingError when the store cannot be reached or
    refuses a write.
    """
    from ..results import open_results
    from ..store import ResultStore
    from .mirror import store_curves, sync_rows

    if results is None:
        results = open_results(ResultStore(results_dir, read_only=True))
    local = results.store.root  # the folder itself, or its local cache folder on object storage
    uri = tracking_uri or default_tracking_uri(local.parent)
    report_dir = report_dir or local / "report"
    if verdicts is None and analysis is None:
        verdicts = _last_verdicts(report_dir)
    loaded = results.all_rows
    rows = loaded[loaded["status"].isin(("ok", "diverged"))].to_dict("records")
    return sync_rows(
        uri,
        results.store,
        rows,
        store_curves(results.store),
        spec_text=results.spec_text,
        artifacts=report_dir,
        view=_view(results, analysis, verdicts),
    )


def _last_verdicts(report_dir: Path) -> dict | None:
    import json

    try:
        found = json.loads((report_dir / "verdict.json").read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _view(results, analysis, verdicts: dict | None):
    """The transfer curves to show: the analysis' slices, or the current rows prepared with the loss
    the last report used (a slice table costs no bootstrap)."""
    from ..analysis.prepare import prepare, slice_table
    from .mirror import TransferView

    if analysis is not None:
        return TransferView(analysis.slices, analysis.loss, verdicts)
    rows = results.rows
    if rows.empty or not rows["status"].isin(("ok", "diverged")).any():
        return None
    loss = (verdicts or {}).get("loss") or "final_val_loss"
    try:
        prep = prepare(rows, loss)
    except ValueError:  # a loss column these rows lack: the default one
        loss = "final_val_loss"
        prep = prepare(rows, loss)
    return TransferView({hp: slice_table(prep, hp) for hp in prep.hps}, loss, verdicts)
