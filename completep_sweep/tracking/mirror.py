"""One idempotent pass that makes MLflow hold what a results folder holds.

Layout: experiment = sweep name; one parent run per sweep (tag ``completep.role=parent``); one child
run per trial (tag ``trial_id``, nested via ``mlflow.parentRunId``). Every sync reads the experiment's
runs with one ``search_runs`` and logs only what is missing, so re-runs, resumed sweeps and repeated
syncs create no twin runs and no repeated metric steps. A child is marked FINISHED only after all its
metrics are logged (a trial's row, hence its curve, is final), so an interrupted child is still
RUNNING and the next sync compares its metric history step by step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..store import ResultStore
from . import TrackingError, connect, tracking_error
from .layout import (
    CURVE_METRICS,
    EXPERIMENT_TAGS,
    child_params,
    child_tags,
    experiment_note,
    present,
    run_name,
    scalar_metrics,
    spec_settings,
    start_ms,
    varying_columns,
)

# ---------------------------------------------------------------- the sync


class _Sync:
    """One pass: find or create the experiment and parent, then add what each child lacks."""

    def __init__(self, client, store: ResultStore, spec_text: str | None):
        self.client, self.store, self.spec_text = client, store, spec_text
        self.results_root = store.root.parent
        self.sweep = store.root.name
        self.counts = {"created": 0, "updated": 0, "skipped": 0}

    def run(
        self,
        rows: list[dict],
        curves: CurveSource,
        *,
        artifacts: Path | None = None,
        view: TransferView | None = None,
    ) -> dict:
        settings, description, hash_, grid = spec_settings(self.spec_text, str(self.store.spec_path))
        experiment_id = self._experiment()
        parent, children, curve_runs = self._existing_runs(experiment_id)
        parent_id = self._parent(experiment_id, parent, settings, description, hash_, rows)
        varying = varying_columns(rows, grid)
        # Curves are read only for the children that lack points (a new or interrupted child).
        needed = [r["trial_id"] for r in rows if _needs_curve(children.get(r["trial_id"]))]
        points = curves(needed) if needed else {}
        for row in rows:
            self._child(
                experiment_id,
                parent_id,
                children.get(row["trial_id"]),
                row,
                points.get(row["trial_id"], []),
                varying,
            )
        if view is not None:
            self._transfer_curves(experiment_id, parent_id, curve_runs, description, view)
        if artifacts is not None or self.spec_text is not None:
            self._artifacts(parent_id, artifacts)
        return self.counts

    def _transfer_curves(
        self, experiment_id: str, parent_id: str, existing: dict, description: str, view: TransferView
    ) -> None:
        """One run per loss-vs-HP curve of the current sweep (the report's own slices, so of the
        report's loss), the saved view that charts them, and the verdicts as the experiment's note."""
        from ..parameterization import ordered
        from .curves import VIEW_KEY, curves, sync_curves, view_state

        if view.slices:
            found = curves(view.slices, view.loss, view.verdicts)
            sync_curves(self.client, experiment_id, parent_id, found, existing)
            shown = ordered({p for t in view.slices.values() for p in t["parameterization"]})
            state = view_state(list(view.slices), shown, view.loss)
            self.client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", state)
        note = experiment_note(self.sweep, description, view.verdicts, view.loss)
        self.client.set_experiment_tag(experiment_id, "mlflow.note.content", note)

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.sweep)
        if found is None:
            location = None
            if self.client.tracking_uri.startswith("sqlite:"):  # a local store keeps artifacts beside it
                location = (self.results_root.resolve() / "mlartifacts" / self.sweep).as_uri()
            return self.client.create_experiment(self.sweep, artifact_location=location, tags=EXPERIMENT_TAGS)
        if found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.sweep!r} is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {found.experiment_id}` and sync again"
            )
        for key, value in EXPERIMENT_TAGS.items():
            if found.tags.get(key) != value:
                self.client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id

    def _existing_runs(self, experiment_id: str):
        """The parent and {trial_id: child} from one paged search_runs (not one search per trial)."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [experiment_id], max_results=5000, page_token=token, order_by=["attributes.start_time ASC"]
            )
            runs += list(page)
            token = page.token
            if not token:
                break
        parents = [r for r in runs if r.data.tags.get("completep.role") == "parent"]
        curve_runs = {
            r.data.tags.get("completep.curve"): r
            for r in runs
            if r.data.tags.get("completep.role") == "curve" and r.info.lifecycle_stage == "active"
        }
        children = {}
        for r in runs:  # the oldest wins should an old race have left twins
            if r.data.tags.get("completep.role") == "child":
                children.setdefault(r.data.tags.get("trial_id"), r)
        return (parents[0] if parents else None), children, curve_runs

    def _parent(
        self,
        experiment_id: str,
        parent,
        settings: dict[str, str],
        description: str,
        hash_: str,
        rows: list[dict],
    ) -> str:
        from mlflow.entities import Param, RunTag

        tags = {"completep.sweep": self.sweep, "completep.role": "parent", "completep.spec_hash": hash_}
        if description:
            tags["mlflow.note.content"] = description
        if parent is None:
            parent = self.client.create_run(experiment_id, tags=tags, run_name=f"{self.sweep} (sweep)")
            self.client.set_terminated(parent.info.run_id, "FINISHED")
        old_params, old_tags = parent.data.params, parent.data.tags
        # The tracker syncs a few trials at a time: add their code versions to those already listed.
        versions = set(filter(None, old_tags.get("completep.code_version", "").split(",")))
        versions |= {str(r["code_version"]) for r in rows if r.get("code_version")}
        tags["completep.code_version"] = ",".join(sorted(versions))
        params = settings
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
            run = self.client.create_run(
                experiment_id,
                start_time=start_ms(row),
                run_name=run_name(row, varying),
                tags=child_tags(row, parent_id),
            )
            self.counts["created"] += 1
        data = run.data
        complete = run.info.status == "FINISHED"  # set last, after every metric (see module docstring)
        if complete:
            missing = {}
        else:  # a new child gets the whole curve; an interrupted one only the steps it lacks
            missing = (
                {k: curve for k in CURVE_METRICS} if created else self._missing_points(run.info.run_id, curve)
            )
        params = [Param(k, v) for k, v in child_params(row, varying).items() if k not in data.params]
        tags = [RunTag(k, v) for k, v in child_tags(row, parent_id).items() if data.tags.get(k) != v]
        scalars = {k: v for k, v in scalar_metrics(row).items() if k not in data.metrics}
        if complete and not (params or tags or scalars):
            self.counts["skipped"] += 1
            return
        if not created:
            self.counts["updated"] += 1
        self.client.log_batch(
            run.info.run_id, metrics=self._metrics(missing, scalars), params=params, tags=tags
        )
        wall = row.get("wall_time_s")
        end_ms = start_ms(row) + int(1000 * wall) if present(wall) else None
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

    def _artifacts(self, parent_id: str, report_dir: Path | None) -> None:
        """spec.toml (from the text already read) and the report files, uploaded only when absent or
        changed in size."""
        files = []
        if self.spec_text is not None:
            existing = {Path(i.path).name: i.file_size for i in self.client.list_artifacts(parent_id)}
            if existing.get("spec.toml") != len(self.spec_text.encode()):
                self.client.log_text(parent_id, self.spec_text, "spec.toml")
        if report_dir is not None and report_dir.is_dir():
            for f in sorted(p for p in report_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
                rel = f.parent.relative_to(report_dir)
                files.append((f, "report" if rel == Path(".") else f"report/{rel.as_posix()}"))
        listed: dict[str | None, dict[str, int]] = {}
        for path, folder in files:
            if folder not in listed:
                listed[folder] = {
                    Path(i.path).name: i.file_size for i in self.client.list_artifacts(parent_id, folder)
                }
            if listed[folder].get(path.name) != path.stat().st_size:
                self.client.log_artifact(parent_id, str(path), folder)


def _needs_curve(run) -> bool:
    return run is None or run.info.status != "FINISHED"


CurveSource = Callable[[list[str]], dict[str, list[dict]]]
"""trial ids -> {trial_id: curve points}: called once per sync, for the children that lack points."""


@dataclass(frozen=True)
class TransferView:
    """What the transfer-curve runs and the experiment note show: the slices of one analysis."""

    slices: dict[str, pd.DataFrame]
    """Per swept HP: the loss-vs-HP table of every shape (``Analysis.slices``)."""
    loss: str
    """The loss those slices are of (``report --loss``)."""
    verdicts: dict | None = None
    """The report's JSON (``Analysis.to_json_dict``) for the note; None before any report."""


def store_curves(store: ResultStore) -> CurveSource:
    """Curves read from the store's files, only those asked for."""

    def read(ids: list[str]) -> dict[str, list[dict]]:
        table = store.load_curves(ids=ids)
        return {tid: g.to_dict("records") for tid, g in table.groupby("trial_id")}

    return read


def sync_rows(
    uri: str,
    store: ResultStore,
    rows: list[dict],
    curves: CurveSource,
    *,
    spec_text: str | None,
    artifacts: Path | None = None,
    view: TransferView | None = None,
) -> dict:
    """Make MLflow hold ``rows`` (finished trial rows, as dicts) and their curves; with ``view`` also
    the transfer curves and note, with ``artifacts`` the report folder's files. Reads no row and no
    sweep file: the caller passes what it already has."""
    from mlflow.exceptions import MlflowException

    client = connect(uri, store.root.parent)
    try:
        return _Sync(client, store, spec_text).run(rows, curves, artifacts=artifacts, view=view)
    except (MlflowException, OSError) as e:
        raise tracking_error(uri, e) from e
