"""The transfer curves in MLflow's own charts: one run per curve, and a saved view that shows them.

MLflow 3.17's chart view draws a line per run, with any metric as the x axis, for metrics logged at
matching steps. So each curve (a parameterization x width x depth x swept HP) is a run whose metric
``loss_vs_<hp>`` holds the seed-mean final loss and ``log2_<hp>`` the HP's position, both at step =
index of the HP value (steps must be >= 0). A view saved in the experiment tag
``mlflow.sharedViewState.<key>`` (the UI's own format, versioned by MLflow since 3.x) filters to
the curve runs, shows every run (not the first 10), and holds one line chart per swept HP with
``log2_<hp>`` as its x axis. ``url`` opens that view in chart mode, with no click needed.
The view format is the UI's and not a public API: it is pinned to MLflow < 3.18 (pyproject.toml).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time

import pandas as pd

from ..fmt import pow2
from ..parameterization import display_name, paper_rank

VIEW_KEY = "transfer-curves"
# A sequential palette per parameterization (light = shallow, dark = deep), readable on white.
PALETTES = {
    "sp": ("#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b"),
    "mup": ("#fdae6b", "#fd8d3c", "#e6550d", "#a63603", "#7f2704"),
    "alpha0.5": ("#bcbddc", "#9e9ac8", "#807dba", "#6a51a3", "#3f007d"),
    "completep": ("#a1d99b", "#74c476", "#31a354", "#006d2c", "#00441b"),
}
OTHER = ("#bdbdbd", "#969696", "#737373", "#525252", "#252525")


def label(parameterization: str) -> str:
    """The paper's name as an MLflow metric key allows it (no '='): α=0.5 -> α 0.5."""
    return re.sub(r"[^\w.\- :/]", " ", display_name(parameterization)).strip()


def loss_key(parameterization: str, hp: str, loss: str) -> str:
    """The y metric of a parameterization's chart; MLflow titles the chart with it."""
    return f"{label(parameterization)}: {loss} vs log2 {hp}"


def diverged_key(parameterization: str, hp: str) -> str:
    return f"{label(parameterization)}: diverged at log2 {hp}"


def optimum_key(hp: str) -> str:
    return f"optimal log2 {hp} vs log2 depth"


def curve_name(parameterization: str, width: int, depth: int) -> str:
    """A plain name: the legend and the runs table read 'µP depth 8 width 64'."""
    return f"{display_name(parameterization)} depth {depth} width {width}"


def order_tag(parameterization: str, width: int, depth: int, hp: str) -> str:
    """Sorts the runs in the paper's order, then by depth (the view orders by this tag, not the name)."""
    return f"{paper_rank(parameterization)} {parameterization} {hp} w{width:06d} d{depth:06d}"


def _shade(p: str, depth: int, depths: list) -> str:
    palette = PALETTES.get(p, OTHER)
    at = round(depths.index(depth) * (len(palette) - 1) / max(len(depths) - 1, 1))
    return palette[min(len(palette) - 1, at)]


def _run(key: str, name: str, order: str, colour: str, metrics: list, params: dict) -> dict:
    digest = hashlib.sha256(json.dumps([name, metrics, params], sort_keys=True).encode()).hexdigest()[:12]
    return {
        "key": key,
        "name": name,
        "metrics": metrics,
        "params": params,
        "tags": {
            "completep.role": "curve",
            "completep.curve": key,
            "completep.curve_hash": digest,
            "completep.order": order,
            "mlflow.runColor": colour,
        },
    }


def curves(
    slices: dict[str, pd.DataFrame], loss: str = "final_val_loss", verdicts: dict | None = None
) -> list[dict]:
    """The runs the view charts: per (parameterization, width, depth, HP) its loss-vs-HP line with
    its diverged points marked at the chart's top; per (parameterization, width, HP) the optimum
    against depth, named with its verdict. Metrics are (key, value, step)."""
    verdict = {
        (r["parameterization"], r["hp"]): r["verdict"] for r in (verdicts or {}).get("recommendations", [])
    }
    refined = {
        (r["parameterization"], r["width"], r["depth"], r["hp"]): r["optimum_refined"]
        for r in (verdicts or {}).get("optima", [])
    }
    out = []
    for hp, table in slices.items():
        optima: dict = {}
        for (p, width, depth), line in table.groupby(["parameterization", "width", "depth"], sort=True):
            line = line[line[hp] > 0].sort_values(hp).reset_index(drop=True)
            finite = [math.isfinite(float(v)) for v in line["loss"]]
            if not any(finite):
                continue
            mine = table[table["parameterization"].eq(p)]
            top = float(mine.loc[mine["loss"].map(lambda v: math.isfinite(float(v))), "loss"].max())
            metrics = []
            for step, (x, v, n_div) in enumerate(zip(line[hp], line["loss"], line["n_diverged"])):
                metrics.append((f"log2 {hp}", math.log2(float(x)), step))
                if math.isfinite(float(v)):
                    metrics.append((loss_key(p, hp, loss), float(v), step))
                if n_div or not math.isfinite(float(v)):
                    metrics.append((diverged_key(p, hp), top, step))
            best = (
                float(line.loc[line["loss"].idxmin(), hp])
                if all(finite)
                else float(line[finite].sort_values("loss")[hp].iloc[0])
            )
            best = refined.get((p, int(width), int(depth), hp), best)
            optima.setdefault((p, int(width)), []).append((int(depth), best))
            depths = sorted(mine["depth"].unique())
            params = {"parameterization": display_name(p), "width": str(width), "depth": str(depth), "hp": hp}
            params["optimum"] = pow2(best)
            params["verdict"] = verdict.get((p, hp), "run completep-sweep report")
            out.append(
                _run(
                    f"{p}|{width}|{depth}|{hp}",
                    curve_name(p, int(width), int(depth)),
                    order_tag(p, int(width), int(depth), hp),
                    _shade(p, depth, depths),
                    metrics,
                    params,
                )
            )
        for (p, width), points in optima.items():
            points.sort()
            metrics = []
            for step, (depth, best) in enumerate(points):
                metrics += [("log2 depth", math.log2(depth), step), (optimum_key(hp), math.log2(best), step)]
            said = verdict.get((p, hp))
            name = f"{display_name(p)} optimum of {hp}" + (f": {said}" if said else "")
            out.append(
                _run(
                    f"{p}|{width}|optimum|{hp}",
                    name + (f" (width {width})" if len({w for q, w in optima if q == p}) > 1 else ""),
                    f"{paper_rank(p)} {p} {hp} w{width:06d} optimum",
                    PALETTES.get(p, OTHER)[-1],
                    metrics,
                    {
                        "parameterization": display_name(p),
                        "width": str(width),
                        "hp": hp,
                        "verdict": said or "",
                    },
                )
            )
    return out


def _chart(uuid: str, section: str, y: str, x: str, extra: tuple = ()) -> dict:
    return {
        "uuid": uuid,
        "type": "LINE",
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "runsCountToCompare": 100,
        "metricKey": y,
        "selectedMetricKeys": [y, *extra],
        "xAxisKey": "metric",
        "selectedXAxisMetricKey": x,
        "useGlobalXaxisKey": False,
        "lineSmoothness": 0,
        "useGlobalLineSmoothing": False,
        "displayPoints": True,
        "scaleType": "linear",
        "xAxisScaleType": "linear",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "range": {"xMin": None, "xMax": None, "yMin": None, "yMax": None},
    }


def _section(uuid: str, name: str, columns: int) -> dict:
    return {
        "uuid": uuid,
        "name": name,
        "display": True,
        "isReordered": False,
        "deleted": False,
        "isGenerated": False,
        "columns": columns,
        "cardHeight": 460,
    }


def view_state(hps: list[str], parameterizations: list[str], loss: str = "final_val_loss") -> str:
    """The saved view: curve runs only, all shown; per swept HP one chart per parameterization (its
    loss against log2 HP, a line per depth, diverged points on the top edge), then one chart of
    every parameterization's optimum against depth (flat: the HP transfers)."""
    sections, charts = [], []
    for hp in hps:
        sections.append(_section(f"sec-{hp}", f"Final loss vs log2 {hp}: one chart per parameterization", 2))
        for p in parameterizations:
            charts.append(
                _chart(
                    f"card-{hp}-{p}", f"sec-{hp}", loss_key(p, hp, loss), f"log2 {hp}", (diverged_key(p, hp),)
                )
            )
        sections.append(_section(f"sec-opt-{hp}", f"Optimal {hp} vs depth: flat = it transfers", 1))
        charts.append(_chart(f"card-opt-{hp}", f"sec-opt-{hp}", optimum_key(hp), "log2 depth"))
    sections.append(
        {
            "uuid": "sec-model",
            "name": "Model metrics",
            "display": False,
            "isReordered": False,
            "deleted": False,
            "isGenerated": True,
        }
    )
    state = {
        "searchFilter": "tags.`completep.role` = 'curve'",
        # Ordering by a tag, not start time, keeps the runs flat (the UI nests children under parents)
        # and in the paper's order with plain run names.
        "orderByKey": "tags.`completep.order`",
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "isAccordionReordered": True,
        "runListHidden": False,
        "useGroupedValuesInCharts": True,
        "groupBy": None,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
        "compareRunSections": sections,
        "compareRunCharts": charts,
    }
    now = int(time.time() * 1000)
    return json.dumps(
        {"name": "Transfer curves", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    )


def sync_curves(client, experiment_id: str, parent_id: str, found: list[dict], existing: dict) -> int:
    """Create the curve runs that are missing or changed (a changed curve's old run is deleted)."""
    from mlflow.entities import Metric, Param

    made = 0
    wanted = {c["key"] for c in found}
    for key, run in existing.items():
        if key not in wanted:
            client.delete_run(run.info.run_id)  # a curve of an earlier version of the sweep
    for curve in found:
        run = existing.get(curve["key"])
        if (
            run is not None
            and run.data.tags.get("completep.curve_hash") == curve["tags"]["completep.curve_hash"]
        ):
            continue
        if run is not None:
            client.delete_run(run.info.run_id)
        new = client.create_run(
            experiment_id, run_name=curve["name"], tags={**curve["tags"], "mlflow.parentRunId": parent_id}
        )
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value, step in curve["metrics"]]
        client.log_batch(
            new.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in curve["params"].items()]
        )
        client.set_terminated(new.info.run_id, "FINISHED")
        made += 1
    return made


def url(base: str, experiment_id: str, *, with_view: bool) -> str:
    """The runs page of the experiment (machine-learning workflow), in the curves view if saved."""
    query = f"viewStateShareKey={VIEW_KEY}&compareRunsMode=CHART&" if with_view else ""
    return f"{base}#/experiments/{experiment_id}/runs?{query}workflowType=machine_learning"
