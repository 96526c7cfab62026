"""MLflow mirror of the Parquet results: the only module that imports mlflow (lazily, it is slow).

Parquet is the source of truth; MLflow is a view of it that can always be rebuilt with ``sync``.
Layout: experiment = sweep name; one parent run per sweep (tag ``completep.role=parent``); one child
run per trial (tag ``trial_id``, nested via ``mlflow.parentRunId``). Every sync reads the experiment's
runs with one ``search_runs`` and logs only what is missing, so re-runs, resumed sweeps and repeated
syncs create no twin runs and no repeated metric steps. A child is marked FINISHED only after all its
metrics are logged (a trial's row, hence its curve, is final), so an interrupted child is still
RUNNING and the next sync compares its metric history step by step.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .store import ResultStore

# Child params logged for every trial; any other config column that varies in the sweep is added.
CHILD_PARAMS = ("parameterization", "alpha", "width", "depth", "base_width", "base_depth", "lr",
                "init_std", "seed", "steps", "batch_size", "tokens")
SCALAR_METRICS = ("final_train_loss", "final_val_loss", "wall_time_s", "flops", "diverged_at_step")
CURVE_METRICS = ("train_loss", "val_loss")
_CONFIG_COLUMNS = ("model", "head_dim", "vocab_size", "seq_len", "mlp_ratio", "bias", "tie_embeddings",
                   "attn_scale", "data", "weight_decay", "eps", "beta1", "beta2", "warmup_steps", "decay",
                   "final_lr_ratio", "grad_clip", "eval_interval", "eval_batches", "divergence_factor")
# MLflow 3's UI opens experiments of unknown kind on its GenAI (traces) pages; this kind opens the runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# MLflow retries an unreachable server with exponential backoff for minutes by default (7 retries,
# 120 s timeout); a sweep must never wait on that. setdefault: a user's explicit choice wins.
_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_DISABLE_TELEMETRY": "true"}


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or refused a write; the message names the URI and the fix."""


def default_tracking_uri(results_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store beside the sweeps (the file store is refused)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(results_root).resolve() / 'mlflow.db'}"


def _connect(uri: str, results_root: Path):
    for key, value in _HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    if uri.startswith("sqlite:///"):
        Path(results_root).mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not the folder
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)  # fail here, with one clear message, not mid-sync
    except Exception as e:
        raise _tracking_error(uri, e) from e
    return client


def _reason(e: BaseException) -> str:
    """The first line of the underlying error: MLflow's messages carry whole tracebacks."""
    root = e.__cause__ if isinstance(e, TrackingError) and e.__cause__ else e
    return (str(root).strip().splitlines() or [type(root).__name__])[0][:300]


def _tracking_error(uri: str, e: BaseException) -> TrackingError:
    return TrackingError(
        f"MLflow tracking store {uri} failed: {_reason(e)}. Start that server, or fix or unset MLFLOW_TRACKING_URI "
        f"(unset means the local SQLite store results/mlflow.db), then run `completep-sweep sync` again; "
        f"the Parquet results are unaffected."
    )


# ---------------------------------------------------------------- reading results


def _spec(store: ResultStore) -> tuple[dict, str]:
    """The sweep file as a dict and its hash (same as spec.Sweep.spec_hash); empty when absent."""
    if not store.spec_path.is_file():
        return {}, ""
    text = store.spec_path.read_text()
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        spec = {}
    return spec, hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_results(store: ResultStore, trial_ids: set[str] | None) -> tuple[list[dict], dict[str, list[dict]]]:
    """Finished trial rows and their curves: all of them, or only ``trial_ids`` (one file each)."""
    if trial_ids is None:
        rows = store.load(include_errors=False).to_dict("records")
        curves = store.load_curves()
        return rows, {tid: g.to_dict("records") for tid, g in curves.groupby("trial_id")}
    rows, curves = [], {}
    for tid in sorted(trial_ids):
        row_file, curve_file = store.trials_dir / f"{tid}.parquet", store.curves_dir / f"{tid}.parquet"
        if not row_file.is_file():  # an errored trial: it has no row yet and will be re-run
            continue
        rows += pq.read_table(row_file).to_pandas().to_dict("records")
        if curve_file.is_file():
            points = pq.read_table(curve_file).to_pandas().drop_duplicates("step", keep="last")
            curves[tid] = points.sort_values("step").to_dict("records")
    return rows, curves


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    return str(value) if _present(value) else "none"


def _pow2(x: float) -> str:
    """2^-7 for exact (half-)octaves, which is how the grids are written; else 3 significant digits."""
    e = math.log2(x) if x > 0 else math.nan
    return f"2^{e:g}" if math.isfinite(e) and (2 * e).is_integer() else f"{x:.3g}"


# ---------------------------------------------------------------- what a run should hold


def _run_name(row: dict, varying: set[str]) -> str:
    name = f"{row['parameterization']} d{row['depth']} w{row['width']} lr={_pow2(row['lr'])}"
    if "init_std" in varying:
        name += f" std={_pow2(row['init_std'])}"
    return f"{name} s{row['seed']}"


def _child_params(row: dict, varying: set[str]) -> dict[str, str]:
    keys = list(CHILD_PARAMS) + sorted(varying - set(CHILD_PARAMS))
    return {k: _text(row.get(k)) for k in keys if k in row}


def _child_tags(row: dict, parent_id: str) -> dict[str, str]:
    return {"trial_id": row["trial_id"], "mlflow.parentRunId": parent_id, "completep.role": "child",
            "completep.sweep": str(row["sweep"]), "status": str(row["status"]),
            "completep.code_version": _text(row.get("code_version"))}


def _scalar_metrics(row: dict) -> dict[str, float]:
    values = {k: row.get(k) for k in SCALAR_METRICS if _present(row.get(k))}
    values["log2_lr"] = math.log2(row["lr"])  # MLflow's chart view: final loss vs lr, grouped by depth
    return {k: float(v) for k, v in values.items()}


def _varying(rows: list[dict], spec: dict) -> set[str]:
    """Config columns that differ between trials: the sweep file's grid axes plus what the rows show."""
    grid = set(spec.get("grid", {})) if isinstance(spec.get("grid"), dict) else set()
    seen = {k for k in _CONFIG_COLUMNS if len({_text(r.get(k)) for r in rows}) > 1}
    return grid | seen


def _flatten_spec(spec: dict) -> dict[str, str]:
    """grid.lr, train.steps, model, parameterizations, ... as strings (description becomes the note)."""
    out = {}
    for key, value in spec.items():
        if key in ("name", "description"):
            continue
        if isinstance(value, dict):
            out.update({f"{key}.{k}": json.dumps(v) if not isinstance(v, str) else v for k, v in value.items()})
        else:
            out[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return out


def _start_ms(row: dict) -> int:
    try:
        return int(datetime.fromisoformat(str(row.get("started_at"))).timestamp() * 1000)
    except ValueError:
        return int(time.time() * 1000)


# ---------------------------------------------------------------- the sync


class _Sync:
    """One pass: find or create the experiment and parent, then add what each child lacks."""

    def __init__(self, client, store: ResultStore, results_root: Path):
        self.client, self.store, self.results_root = client, store, results_root
        self.sweep = store.root.name
        self.counts = {"created": 0, "updated": 0, "skipped": 0}

    def run(self, rows: list[dict], curves: dict[str, list[dict]], *, artifacts: Path | None) -> dict:
        spec, spec_hash = _spec(self.store)
        experiment_id = self._experiment()
        parent, children = self._existing_runs(experiment_id)
        parent_id = self._parent(experiment_id, parent, spec, spec_hash, rows)
        varying = _varying(rows, spec)
        for row in rows:
            self._child(experiment_id, parent_id, children.get(row["trial_id"]), row,
                        curves.get(row["trial_id"], []), varying)
        if artifacts is not None:
            self._artifacts(parent_id, artifacts)
        return self.counts

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.sweep)
        if found is None:
            location = None
            if self.client.tracking_uri.startswith("sqlite:"):  # a local store keeps artifacts beside it
                location = (self.results_root.resolve() / "mlartifacts" / self.sweep).as_uri()
            return self.client.create_experiment(self.sweep, artifact_location=location, tags=EXPERIMENT_TAGS)
        if found.lifecycle_stage == "deleted":
            raise TrackingError(f"MLflow experiment {self.sweep!r} is deleted; restore it with "
                                f"`mlflow experiments restore --experiment-id {found.experiment_id}` and sync again")
        for key, value in EXPERIMENT_TAGS.items():
            if found.tags.get(key) != value:
                self.client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id

    def _existing_runs(self, experiment_id: str):
        """The parent and {trial_id: child} from one paged search_runs (not one search per trial)."""
        runs, token = [], None
        while True:
            page = self.client.search_runs([experiment_id], max_results=5000, page_token=token,
                                           order_by=["attributes.start_time ASC"])
            runs += list(page)
            token = page.token
            if not token:
                break
        parents = [r for r in runs if r.data.tags.get("completep.role") == "parent"]
        children = {}
        for r in runs:  # the oldest wins should an old race have left twins
            if r.data.tags.get("completep.role") == "child":
                children.setdefault(r.data.tags.get("trial_id"), r)
        return (parents[0] if parents else None), children

    def _parent(self, experiment_id: str, parent, spec: dict, spec_hash: str, rows: list[dict]) -> str:
        from mlflow.entities import Param, RunTag

        tags = {"completep.sweep": self.sweep, "completep.role": "parent", "completep.spec_hash": spec_hash}
        if spec.get("description"):
            tags["mlflow.note.content"] = str(spec["description"])
        if parent is None:
            parent = self.client.create_run(experiment_id, tags=tags, run_name=f"{self.sweep} (sweep)")
            self.client.set_terminated(parent.info.run_id, "FINISHED")
        old_params, old_tags = parent.data.params, parent.data.tags
        # The tracker syncs a few trials at a time: add their code versions to those already listed.
        versions = set(filter(None, old_tags.get("completep.code_version", "").split(",")))
        versions |= {str(r["code_version"]) for r in rows if r.get("code_version")}
        tags["completep.code_version"] = ",".join(sorted(versions))
        params = _flatten_spec(spec)
        # Params are immutable in MLflow: when the sweep file changes (an extended grid), the first values
        # stay and the new ones go to tags spec.<key>; spec_hash and spec.toml always show the latest.
        tags.update({f"spec.{k}": v for k, v in params.items() if k in old_params and old_params[k] != v})
        new_params = [Param(k, v) for k, v in params.items() if k not in old_params]
        new_tags = [RunTag(k, v) for k, v in tags.items() if old_tags.get(k) != v]
        if new_params or new_tags:
            self.client.log_batch(parent.info.run_id, params=new_params, tags=new_tags)
        return parent.info.run_id

    def _child(self, experiment_id, parent_id, run, row, curve, varying) -> None:
        from mlflow.entities import Param, RunTag

        created = run is None
        if created:
            run = self.client.create_run(experiment_id, start_time=_start_ms(row), run_name=_run_name(row, varying),
                                         tags=_child_tags(row, parent_id))
            self.counts["created"] += 1
        data = run.data
        complete = run.info.status == "FINISHED"  # set last, after every metric (see module docstring)
        if complete:
            missing = {}
        else:  # a new child gets the whole curve; an interrupted one only the steps it lacks
            missing = {k: curve for k in CURVE_METRICS} if created else self._missing_points(run.info.run_id, curve)
        params = [Param(k, v) for k, v in _child_params(row, varying).items() if k not in data.params]
        tags = [RunTag(k, v) for k, v in _child_tags(row, parent_id).items() if data.tags.get(k) != v]
        scalars = {k: v for k, v in _scalar_metrics(row).items() if k not in data.metrics}
        if complete and not (params or tags or scalars):
            self.counts["skipped"] += 1
            return
        if not created:
            self.counts["updated"] += 1
        self.client.log_batch(run.info.run_id, metrics=self._metrics(missing, scalars), params=params, tags=tags)
        wall = row.get("wall_time_s")
        end_ms = _start_ms(row) + int(1000 * wall) if _present(wall) else None
        self.client.set_terminated(run.info.run_id, "FINISHED", end_time=end_ms)

    def _missing_points(self, run_id: str, curve: list[dict]) -> dict[str, list[dict]]:
        """Per curve metric, the points not yet logged (a child interrupted mid-way)."""
        missing = {}
        for key in CURVE_METRICS:
            logged = {m.step for m in self.client.get_metric_history(run_id, key)}
            missing[key] = [p for p in curve if int(p["step"]) not in logged]
        return missing

    @staticmethod
    def _metrics(curve: dict[str, list[dict]], scalars: dict[str, float]) -> list:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        out = [Metric(k, float(p[k]), now, int(p["step"])) for k, points in curve.items() for p in points]
        return out + [Metric(k, v, now, 0) for k, v in scalars.items()]

    def _artifacts(self, parent_id: str, report_dir: Path) -> None:
        """spec.toml and the report files, uploaded only when absent or changed in size."""
        files = [(self.store.spec_path, None)] if self.store.spec_path.is_file() else []
        if report_dir.is_dir():
            for f in sorted(p for p in report_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
                rel = f.parent.relative_to(report_dir)
                files.append((f, "report" if rel == Path(".") else f"report/{rel.as_posix()}"))
        listed: dict[str | None, dict[str, int]] = {}
        for path, folder in files:
            if folder not in listed:
                listed[folder] = {Path(i.path).name: i.file_size for i in self.client.list_artifacts(parent_id, folder)}
            if listed[folder].get(path.name) != path.stat().st_size:
                self.client.log_artifact(parent_id, str(path), folder)


def sync(results_dir: Path, tracking_uri: str | None = None, *, report_dir: Path | None = None) -> dict:
    """Mirror one sweep's results (``results/<sweep>``) into MLflow; returns created/updated/skipped counts.

    ``report_dir`` defaults to ``results_dir/report``; its files and spec.toml become parent artifacts.
    Raises TrackingError when the store cannot be reached or refuses a write.
    """
    results_dir = Path(results_dir)
    uri = tracking_uri or default_tracking_uri(results_dir.parent)
    return _sync_trials(results_dir, uri, None, report_dir or results_dir / "report")


def _sync_trials(results_dir: Path, uri: str, trial_ids: set[str] | None, report_dir: Path | None) -> dict:
    from mlflow.exceptions import MlflowException

    client = _connect(uri, results_dir.parent)
    store = ResultStore(results_dir)
    rows, curves = _read_results(store, trial_ids)
    try:
        return _Sync(client, store, results_dir.parent).run(rows, curves, artifacts=report_dir)
    except (MlflowException, OSError) as e:
        raise _tracking_error(uri, e) from e


# ---------------------------------------------------------------- the sweep driver's tracker


class Tracker:
    """Mirrors trials into MLflow from a daemon thread, so tracking never stops or slows the sweep.

    The driver writes Parquet first, then calls ``log_trial(trial_id)``. The first failure prints one
    warning and the tracker stops trying; ``completep-sweep sync`` fills the gap later.
    """

    def __init__(self, results_dir: Path, tracking_uri: str | None = None):
        self.results_dir = Path(results_dir)
        self.uri = tracking_uri or default_tracking_uri(self.results_dir.parent)
        self.failed = False
        self._queue: queue.Queue[str | None] = queue.Queue()
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
                    _sync_trials(self.results_dir, self.uri, batch, None)
                except Exception as e:  # noqa: BLE001 - whatever MLflow does, the sweep goes on
                    self.failed = True
                    print(f"warning: MLflow at {self.uri} unreachable: {_reason(e)}; rows are safe in Parquet; "
                          f"run `completep-sweep sync {self.results_dir}` later", file=sys.stderr)


# ---------------------------------------------------------------- the UI


def serve_ui(results_root: Path, *, port: int = 5000, host: str = "127.0.0.1",
             tracking_uri: str | None = None) -> subprocess.Popen:
    """Start ``mlflow server`` (one worker) on the project store; the caller stops its process group."""
    uri = tracking_uri or default_tracking_uri(results_root)
    if uri.startswith(("http:", "https:", "databricks")):
        raise TrackingError(f"tracking URI {uri} is already a server: open it in a browser instead of starting a UI")
    Path(results_root).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
           "--artifacts-destination", str(Path(results_root).resolve() / "mlartifacts"),
           "--host", host, "--port", str(port), "--workers", "1",
           "--uvicorn-opts", "--log-level warning"]  # errors only, not a line per request
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(cmd, env=env, start_new_session=True)  # own group: stop it with all children


def ui_url(results_root: Path, sweep: str | None = None, *, port: int = 5000, host: str = "127.0.0.1",
           tracking_uri: str | None = None) -> str:
    """The UI address, pointing at the runs of the sweep's experiment when it exists in the store."""
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    if sweep is None:
        return base
    client = _connect(tracking_uri or default_tracking_uri(results_root), Path(results_root))
    experiment = client.get_experiment_by_name(sweep)
    return f"{base}#/experiments/{experiment.experiment_id}/runs" if experiment else base


def wait_for_ui(proc: subprocess.Popen, url: str, timeout: float = 60) -> None:
    """Block until the server at base ``url`` (``http://host:port/``) answers; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrackingError(f"mlflow server for {url} exited with status {proc.returncode} (port in use?)")
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TrackingError(f"mlflow server at {url} did not answer within {timeout:g} s")


def stop_ui(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop the server and its workers (the whole process group it leads)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_ui(results_root: Path, *, port: int = 5000, host: str = "127.0.0.1", tracking_uri: str | None = None,
           sweep: str | None = None) -> int:
    """Blocking ``completep-sweep ui``: serve until Ctrl-C, printing the sweep's URL once it answers."""
    proc = serve_ui(results_root, port=port, host=host, tracking_uri=tracking_uri)
    try:
        wait_for_ui(proc, ui_url(results_root, port=port, host=host))
        print(ui_url(results_root, sweep, port=port, host=host, tracking_uri=tracking_uri), flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_ui(proc)
