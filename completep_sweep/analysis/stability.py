"""Stability: the largest stable value of the HP per shape, and whether it moves with depth.

A tested value is stable when every seed finished and their mean loss is within
outcome.STABLE_WITHIN (4%) of the shape's best mean. The edge is the largest stable value reached
going up from the optimum without crossing an unstable one; when even the highest tested value is
stable, the edge is only a lower bound. Across depths: the slope of the edge against log2(depth)
(octaves per doubling), with a 95% normal interval whose per-shape error is the larger of the
scatter about the line and EDGE_NOISE (one shape's edge, from three seeds, is known to about that
many octaves: benchmarks/calibration.py measures the resulting coverage): falls / rises when the
interval excludes 0, stays when it lies within +- the tolerance.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..outcome import STABLE_WITHIN
from .lines import Line, sign_verdict
from .prepare import log2

EDGE_NOISE = 0.35  # octaves

EDGE_COLUMNS = ["parameterization", "hp", "width", "depth", "max_stable", "lower_bound", "step"]
STABILITY_COLUMNS = [
    "parameterization",
    "hp",
    "fixed_value",
    "slope",
    "slope_low",
    "slope_high",
    "n_shapes",
    "verdict",
    "reason",
]


def edge(trials: pd.DataFrame, hp: str) -> tuple[float, bool, float]:
    """(log2 of the largest stable value, whether it is only a lower bound, the local step)."""
    per_point = trials.groupby(hp)["_value"]
    means = per_point.mean()
    xs = log2(means.index.to_numpy(float))
    ok = np.isfinite(xs)
    means, xs = means.to_numpy(float)[ok], xs[ok]
    if not np.isfinite(means).any():
        return math.nan, False, math.nan
    best = np.nanargmin(np.where(np.isfinite(means), means, np.nan))
    threshold = means[best] * (1 + STABLE_WITHIN)
    i = best
    while i + 1 < len(xs) and np.isfinite(means[i + 1]) and means[i + 1] <= threshold:
        i += 1
    step = xs[i + 1] - xs[i] if i + 1 < len(xs) else (xs[i] - xs[i - 1] if i > 0 else 1.0)
    return float(xs[i]), i == len(xs) - 1, float(step)


def edge_rows(line: Line) -> list[dict[str, Any]]:
    rows = []
    for k, value in enumerate(line.values):
        x, bound, step = edge(line.trials[line.trials["_shape"].eq(k)], line.hp)
        width, depth = (
            (line.fixed_value, int(value)) if line.axis == "depth" else (int(value), line.fixed_value)
        )
        rows.append(
            {
                "parameterization": line.parameterization,
                "hp": line.hp,
                "width": width,
                "depth": depth,
                "max_stable": 2.0**x if math.isfinite(x) else math.nan,
                "lower_bound": bound,
                "step": step,
            }
        )
    return rows


def stability_row(line: Line, edges: list[dict], tol: float) -> dict[str, Any]:
    x = np.array([math.log2(e["max_stable"]) if e["max_stable"] > 0 else math.nan for e in edges])
    t = line.t
    out = {
        "parameterization": line.parameterization,
        "hp": line.hp,
        "fixed_value": line.fixed_value,
        "n_shapes": len(edges),
    }
    bounded = [int(v) for v, e in zip(line.values, edges) if e["lower_bound"]]
    if len(edges) < 3 or not np.isfinite(x).all():
        return {
            **out,
            "slope": math.nan,
            "slope_low": math.nan,
            "slope_high": math.nan,
            "verdict": "inconclusive",
            "reason": f"only {len(edges)} depths with a stable value (need 3)",
        }
    slope, intercept = np.polyfit(t, x, 1)
    dof = len(x) - 2
    scatter = math.sqrt(np.sum((x - (intercept + slope * t)) ** 2) / dof) if dof > 0 else 0.0
    half = 1.959964 * max(scatter, EDGE_NOISE) / math.sqrt(np.sum((t - t.mean()) ** 2))
    low, high = slope - half, slope + half
    where = ", ".join(
        f"{line.axis[0]}{int(v)}: {'>=' if e['lower_bound'] else ''}2^{xi:g}"
        for v, e, xi in zip(line.values, edges, x)
    )
    if bounded:
        verdict, reason = (
            "inconclusive",
            (
                f"stable up to the highest tested value at {line.axis} "
                f"{', '.join(map(str, bounded))} ({where}); test higher values"
            ),
        )
    else:
        verdict = sign_verdict(low, high, tol, ("falls", "rises", "stays"))
        interval = f"{slope:+.2f} [{low:+.2f}, {high:+.2f}] oct/doubling"
        reason = {
            "falls": f"the stable range shrinks {interval} ({where})",
            "stays": f"{interval}, within ±{tol:g} ({where})",
        }.get(verdict, f"{interval} ({where})")
    return {
        **out,
        "slope": float(slope),
        "slope_low": low,
        "slope_high": high,
        "verdict": verdict,
        "reason": reason,
    }


def stability_tables(lines: list[Line], tol: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(edges per shape, verdict per depth line)."""
    edges, verdicts = [], []
    for line in lines:
        if line.axis != "depth":
            continue
        rows = edge_rows(line)
        edges += rows
        if len(line.values) >= 2:
            verdicts.append(stability_row(line, rows, tol))
    return pd.DataFrame(edges, columns=EDGE_COLUMNS), pd.DataFrame(verdicts, columns=STABILITY_COLUMNS)
