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
import time

import pandas as pd

from ..fmt import pow2
from ..parameterization import paper_rank

VIEW_KEY = "transfer-curves"
# A sequential palette per parameterization (light = shallow, dark = deep), readable on white.
PALETTES = {
    "sp": ("#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b"),
    "mup": ("#fdae6b", "#fd8d3c", "#e6550d", "#a63603", "#7f2704"),
    "alpha0.5": ("#bcbddc", "#9e9ac8", "#807dba", "#6a51a3", "#3f007d"),
    "completep": ("#a1d99b", "#74c476", "#31a354", "#006d2c", "#00441b"),
}
OTHER = ("#bdbdbd", "#969696", "#737373", "#525252", "#252525")


def curve_name(parameterization: str, width: int, depth: int, hp: str) -> str:
    """Sorts in the paper's order, then by depth (zero-padded): the chart legend reads in order."""
    return f"{paper_rank(parameterization)} {parameterization} d{depth:03d} w{width} {hp}"


def curves(slices: dict[str, pd.DataFrame]) -> list[dict]:
    """Each slice line as a curve: name, tags, params and (step, loss, log2 value) points."""
    out = []
    for hp, table in slices.items():
        for (p, width, depth), line in table.groupby(["parameterization", "width", "depth"], sort=True):
            line = line[line[hp] > 0].sort_values(hp)
            points = [
                (i, float(v), math.log2(float(x)))
                for i, (x, v) in enumerate(zip(line[hp], line["loss"]))
                if math.isfinite(float(v))
            ]
            if not points:
                continue
            depths = sorted(table.loc[table["parameterization"].eq(p), "depth"].unique())
            palette = PALETTES.get(p, OTHER)
            shade = palette[
                min(
                    len(palette) - 1,
                    round(depths.index(depth) * (len(palette) - 1) / max(len(depths) - 1, 1)),
                )
            ]
            key = f"{p}|{width}|{depth}|{hp}"
            digest = hashlib.sha256(json.dumps(points).encode()).hexdigest()[:12]
            out.append(
                {
                    "key": key,
                    "name": curve_name(p, int(width), int(depth), hp),
                    "points": points,
                    "hp": hp,
                    "params": {
                        "parameterization": p,
                        "width": str(width),
                        "depth": str(depth),
                        "hp": hp,
                        "best": pow2(2.0 ** min(points, key=lambda q: q[1])[2]),
                    },
                    "tags": {
                        "completep.role": "curve",
                        "completep.curve": key,
                        "completep.curve_hash": digest,
                        "mlflow.runColor": shade,
                    },
                }
            )
    return out


def view_state(hps: list[str]) -> str:
    """The saved view: curve runs only, all shown, one loss-vs-log2(HP) line chart per swept HP."""
    sections = [
        {
            "uuid": f"sec-{hp}",
            "name": f"Final loss vs log2({hp}), one line per depth",
            "display": True,
            "isReordered": False,
            "deleted": False,
            "isGenerated": False,
            "columns": 1,
            "cardHeight": 520,
        }
        for hp in hps
    ]
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
    charts = [
        {
            "uuid": f"card-{hp}",
            "type": "LINE",
            "metricSectionId": f"sec-{hp}",
            "deleted": False,
            "isGenerated": False,
            "runsCountToCompare": 100,
            "metricKey": f"loss_vs_{hp}",
            "selectedMetricKeys": [f"loss_vs_{hp}"],
            "xAxisKey": "metric",
            "selectedXAxisMetricKey": f"log2_{hp}",
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
        for hp in hps
    ]
    state = {
        "searchFilter": "tags.`completep.role` = 'curve'",
        # Ordering by name, not start time, keeps the runs flat (the UI nests children under parents).
        "orderByKey": "tags.`mlflow.runName`",
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
        metrics = [Metric(f"loss_vs_{curve['hp']}", loss, now, step) for step, loss, _ in curve["points"]]
        metrics += [Metric(f"log2_{curve['hp']}", x, now, step) for step, _, x in curve["points"]]
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
