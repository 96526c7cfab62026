"""Does the optimum move? Drift of log2(optimum) against log2(depth) and log2(width), and a verdict."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .prepare import log2, mode

# No per-shape optimum is treated as known better than ±0.1 octave in the drift fit: keeps a
# zero-width interval (noise-free seeds) from getting infinite weight.
SIGMA_FLOOR_OCTAVES = 0.1
Z95 = 1.959964
# Student t 0.975 quantiles for 1..30 degrees of freedom (beyond: Cornish-Fisher expansion).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

TRANSFER_COLUMNS = [
    "parameterization", "hp", "axis", "fixed_axis", "fixed_value", "slope", "slope_low",
    "slope_high", "shift_octaves", "shift_low", "shift_high", "endpoint_shift_octaves",
    "n_shapes", "verdict", "reason", "tolerance_octaves",
]


def _t975(dof: int) -> float:
    if dof < 1:
        return math.nan
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = Z95
    return z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)


def _wls_slope(x: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares slope of y on x with a 95% interval.

    Weights are 1/σ² from the per-shape intervals. The half-width is the wider of
    (a) z·SE with the per-shape σ taken as known, and (b) t(n−2)·SE·sqrt(χ²/(n−2)), the classical
    interval from the scatter about the line. (a) covers noise-free optima, (b) covers optima that
    scatter more than their own intervals admit; taking the max keeps the interval continuous.
    Two shapes: no interval.
    """
    w = 1.0 / sigma**2
    design = np.column_stack([np.ones_like(x), x])
    precision = design.T @ (design * w[:, None])
    beta = np.linalg.solve(precision, design.T @ (w * y))
    dof = len(x) - 2
    if dof < 1:
        return float(beta[1]), math.nan, math.nan
    se_known = math.sqrt(np.linalg.inv(precision)[1, 1])
    chi2 = float(np.sum(w * (y - design @ beta) ** 2))
    half = max(Z95 * se_known, _t975(dof) * se_known * math.sqrt(chi2 / dof))
    return float(beta[1]), float(beta[1] - half), float(beta[1] + half)


def _fixed_value(rows: pd.DataFrame, axis: str, other: str) -> Any:
    """The value of the other axis to hold fixed: the one with the most shapes along ``axis``;
    ties go to the base value (base_width or base_depth), then to the smallest."""
    counts = rows.groupby(other)[axis].nunique()
    best = counts[counts == counts.max()].index
    base = mode(rows.get(f"base_{other}"))
    return base if base in set(best) else min(best)


def _transfer_row(rows: pd.DataFrame, axis: str, tolerance: float) -> dict[str, Any]:
    other = "width" if axis == "depth" else "depth"
    fixed = _fixed_value(rows, axis, other)
    line = rows[rows[other].eq(fixed)].sort_values(axis)
    x = np.log2(line[axis].to_numpy(float))
    y = log2(line["optimum_refined"].to_numpy(float))
    half_width = (log2(line["interval_high"].to_numpy(float))
                  - log2(line["interval_low"].to_numpy(float))) / (2 * Z95)
    sigma = np.maximum(np.nan_to_num(half_width, nan=0.0), SIGMA_FLOOR_OCTAVES)
    reasons = []
    edges = line.loc[line["at_edge"].astype(bool), axis].tolist()
    if edges:
        reasons.append(f"optimum at grid edge at {axis} {', '.join(map(str, edges))}")
    ok = np.isfinite(y)
    if not ok.all():
        reasons.append(f"no positive finite optimum at {axis} {', '.join(map(str, line.loc[~ok, axis]))}")
    if len(line) < 3:
        reasons.append(f"only {len(line)} shapes along {axis} (need 3)")
    slope = low = high = math.nan
    if ok.sum() >= 2:
        slope, low, high = _wls_slope(x[ok], y[ok], sigma[ok])
    span = float(x.max() - x.min())
    shift, shift_low, shift_high = abs(slope) * span, low * span, high * span
    if not math.isnan(shift_low) and shift_high - shift_low > 2 * tolerance:
        reasons.append(f"shift interval [{shift_low:.2f}, {shift_high:.2f}] octaves wider than "
                       f"2 × tolerance")
    if reasons:
        verdict = "inconclusive"
    elif shift <= tolerance:
        verdict, reasons = "transfers", [f"fitted shift {shift:.2f} ≤ {tolerance:g} octaves"]
    else:
        verdict, reasons = "drifts", [f"fitted shift {shift:.2f} > {tolerance:g} octaves"]
    return {
        "parameterization": line["parameterization"].iloc[0], "hp": line["hp"].iloc[0],
        "axis": axis, "fixed_axis": other, "fixed_value": fixed,
        "slope": slope, "slope_low": low, "slope_high": high,
        "shift_octaves": shift, "shift_low": shift_low, "shift_high": shift_high,
        "endpoint_shift_octaves": float(abs(y[ok][-1] - y[ok][0])) if ok.any() else math.nan,
        "n_shapes": len(line), "verdict": verdict, "reason": "; ".join(reasons),
        "tolerance_octaves": tolerance,
    }


def transfer_table(optima: pd.DataFrame, *, tolerance_octaves: float = 1.0) -> pd.DataFrame:
    """Drift of log2(optimum_refined) against log2(depth) and log2(width), with a verdict.

    One row per (parameterization, hp, axis) for every axis with at least two values. The other
    axis is held at one value (see ``_fixed_value``). ``shift_octaves`` is the fitted shift over
    the tested range, |slope| × log2(max/min); ``endpoint_shift_octaves`` is the raw difference
    of the end points. Verdict: inconclusive when any optimum is at the grid edge or not finite,
    fewer than 3 shapes, or the shift interval is wider than 2 × tolerance; else transfers when
    shift_octaves ≤ tolerance, drifts otherwise.
    """
    rows = []
    for (_, _), group in optima.groupby(["parameterization", "hp"], sort=True):
        for axis in ("depth", "width"):
            if group[axis].nunique() >= 2:
                rows.append(_transfer_row(group, axis, tolerance_octaves))
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
