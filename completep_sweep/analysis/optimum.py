"""The optimum of one HP at one shape: grid argmin, refined estimate and its interval.

The refined estimate is the shape's own curve (curve.py): its best tested value, refined by the
parabola through it and its neighbours and kept within half a grid step of it, with a seed-bootstrap
95% interval never narrower than half a step either side (lines.py). Where no curve can be read
(values <= 0 such as weight_decay 0, with no position in octaves), the parabola through the argmin
and its neighbours stands in, with the band of grid values within 1% of the best as its interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .prepare import Prepared, hp_slice, log2, mode

DEFAULT_BAND_TOLERANCE = 0.01  # fallback band: loss within 1% (relative) of the slice minimum

OPTIMA_COLUMNS = [
    "parameterization",
    "alpha",
    "width",
    "depth",
    "base_width",
    "base_depth",
    "hp",
    "optimum",
    "optimum_refined",
    "interval_low",
    "interval_high",
    "interval_method",
    "loss",
    "at_edge",
    "n_seeds",
    "n_diverged",
    "n_error",
    "n_points",
]


def refined_optimum(values: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid argmin index and refined optimum (in HP units) for each row of ``y`` (shape B × n).

    Refinement: the vertex of the parabola in log2(HP) through the argmin and its two neighbours,
    when the argmin is interior, all three losses are finite and the parabola is convex; otherwise
    the argmin itself (also when a value is ≤ 0, e.g. weight_decay 0, where log2 is undefined).
    Because the middle point is the lowest of the three, the vertex lies between the neighbours.
    Rows with no finite loss give NaN.
    """
    x = log2(values)
    y = np.atleast_2d(np.asarray(y, dtype=float))
    n = y.shape[1]
    rows = np.arange(y.shape[0])
    i = np.argmin(np.where(np.isnan(y), np.inf, y), axis=1)
    il, ir = np.clip(i - 1, 0, n - 1), np.clip(i + 1, 0, n - 1)
    x0, x1, x2 = x[il], x[i], x[ir]
    y0, y1, y2 = y[rows, il], y[rows, i], y[rows, ir]
    with np.errstate(all="ignore"):
        curvature = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
        num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
        den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
        vertex = x1 - 0.5 * num / den
    ok = (
        (i > 0)
        & (i < n - 1)
        & np.isfinite(y0)
        & np.isfinite(y1)
        & np.isfinite(y2)
        & np.isfinite(x0)
        & np.isfinite(x2)
        & (curvature > 0)
        & np.isfinite(vertex)
    )
    refined = np.where(ok, 2.0 ** np.where(ok, vertex, 0.0), values[i].astype(float))
    refined[~np.isfinite(y).any(axis=1)] = np.nan
    return i, refined


def _band_interval(
    values: np.ndarray, y: np.ndarray, refined: float, tolerance: float
) -> tuple[float, float]:
    """Hull of grid values whose loss is within ``tolerance`` (relative) of the minimum, widened
    to include the refined estimate so the point estimate always lies in its interval."""
    finite = np.isfinite(y)
    if not finite.any():
        return math.nan, math.nan
    y_min = y[finite].min()
    inside = values[finite & (y <= y_min + tolerance * abs(y_min))]
    return float(min(inside.min(), refined)), float(max(inside.max(), refined))


def _optimum_row(prep: Prepared, key: tuple, hp: str, band_tolerance: float, fitted) -> dict[str, Any]:
    line, trials, n_error = hp_slice(prep, key, hp)
    values, y = line[hp].to_numpy(float), line["loss"].to_numpy(float)
    i, refined = refined_optimum(values, y[None, :])
    i, refined = int(i[0]), float(refined[0])
    found = not math.isnan(refined)  # some grid point has a finite loss
    interval, method = (math.nan, math.nan), "none"
    beyond = False
    # A curve in octaves needs every tested value > 0 (weight_decay 0 has no log2): else the band.
    if found and fitted is not None and math.isfinite(fitted[0]) and (values > 0).all():
        mu, low, high = fitted
        refined, interval, method = 2.0**mu, (2.0**low, 2.0**high), "seed bootstrap"
        measured = log2(values[np.isfinite(y)])
        beyond = not (measured.min() <= mu <= measured.max())
    elif found:
        interval, method = _band_interval(values, y, refined, band_tolerance), f"band(rel {band_tolerance:g})"
    shape_trials = prep.rows("trials", key)
    return {
        "parameterization": key[0],
        "alpha": shape_trials["alpha"].iloc[0] if "alpha" in shape_trials else math.nan,
        "width": key[1],
        "depth": key[2],
        "base_width": mode(shape_trials.get("base_width")),
        "base_depth": mode(shape_trials.get("base_depth")),
        "hp": hp,
        "optimum": values[i] if found else math.nan,
        "optimum_refined": refined,
        "interval_low": interval[0],
        "interval_high": interval[1],
        "interval_method": method,
        "loss": y[i] if found else math.inf,
        # An argmin on the first or last tested value is only a bound: the grid must be widened.
        "at_edge": bool(not found or i in (0, len(values) - 1) or beyond),
        "n_seeds": int(line["n_seeds"].iloc[i]) if len(line) else 0,
        "n_diverged": int(np.isinf(trials["_value"]).sum()),
        "n_error": n_error,
        "n_points": len(values),
    }


def optima(prep: Prepared, lines: dict[str, list], band_tolerance: float) -> pd.DataFrame:
    """One row per (shape, swept hp); ``lines`` holds each hp's lines (lines.build_lines)."""
    fitted = {}
    for hp, found in lines.items():
        for line in found:
            if line.axis == "depth":
                for value, estimate in zip(line.values, line.optima()):
                    fitted[(line.parameterization, line.fixed_value, int(value), hp)] = estimate
    rows = [
        _optimum_row(prep, key, hp, band_tolerance, fitted.get((*key, hp)))
        for key in prep.keys()
        for hp in prep.hps
    ]
    return pd.DataFrame(rows, columns=OPTIMA_COLUMNS)
