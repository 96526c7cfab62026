"""The optimum of one HP at one shape: grid argmin, refined estimate and its interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .prepare import Prepared, hp_slice, log2, mode

DEFAULT_BAND_TOLERANCE = 0.01  # one-seed band: loss within 1% (relative) of the slice minimum
N_BOOTSTRAP = 400
BOOTSTRAP_SEED = 0  # fixed so that the same trials always give the same intervals

OPTIMA_COLUMNS = [
    "parameterization", "alpha", "width", "depth", "base_width", "base_depth", "hp", "optimum",
    "optimum_refined", "interval_low", "interval_high", "interval_method", "loss", "at_edge",
    "n_seeds", "n_diverged", "n_error", "n_points",
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
    ok = ((i > 0) & (i < n - 1) & np.isfinite(y0) & np.isfinite(y1) & np.isfinite(y2)
          & np.isfinite(x0) & np.isfinite(x2) & (curvature > 0) & np.isfinite(vertex))
    refined = np.where(ok, 2.0 ** np.where(ok, vertex, 0.0), values[i].astype(float))
    refined[~np.isfinite(y).any(axis=1)] = np.nan
    return i, refined


def _bootstrap_interval(values: np.ndarray, per_seed: np.ndarray, n_boot: int,
                        seed: int) -> tuple[float, float]:
    """2.5/97.5 percentiles of the refined optimum when seeds are resampled with replacement.

    ``per_seed`` is n_points × n_seeds (NaN: not run, inf: diverged). The slice (other HPs) stays
    fixed at the full-data best combination; only the seed average is resampled.
    """
    k = per_seed.shape[1]
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, k))
    np.add.at(counts, (np.repeat(np.arange(n_boot), k), rng.integers(0, k, size=n_boot * k)), 1.0)
    present = ~np.isnan(per_seed)
    finite = np.where(np.isfinite(per_seed), per_seed, 0.0)
    with np.errstate(all="ignore"):
        mean = (counts @ finite.T) / (counts @ present.T)
    mean[(counts @ np.isinf(per_seed).T) > 0] = np.inf
    mean[(counts @ present.T) == 0] = np.nan
    _, refined = refined_optimum(values, mean)
    refined = refined[~np.isnan(refined)]
    if refined.size == 0:
        return math.nan, math.nan
    # Percentiles of the HP itself equal those of log2(HP) mapped back (monotone), and allow 0.
    low, high = np.percentile(refined, [2.5, 97.5], method="inverted_cdf")
    return float(low), float(high)


def _band_interval(values: np.ndarray, y: np.ndarray, refined: float,
                   tolerance: float) -> tuple[float, float]:
    """Hull of grid values whose loss is within ``tolerance`` (relative) of the minimum, widened
    to include the refined estimate so the point estimate always lies in its interval."""
    finite = np.isfinite(y)
    if not finite.any():
        return math.nan, math.nan
    y_min = y[finite].min()
    inside = values[finite & (y <= y_min + tolerance * abs(y_min))]
    return float(min(inside.min(), refined)), float(max(inside.max(), refined))


def _optimum_row(prep: Prepared, key: tuple, hp: str, band_tolerance: float,
                 n_boot: int, boot_seed: int) -> dict[str, Any]:
    line, trials, n_error = hp_slice(prep, key, hp)
    values, y = line[hp].to_numpy(float), line["loss"].to_numpy(float)
    i, refined = refined_optimum(values, y[None, :])
    i, refined = int(i[0]), float(refined[0])
    per_seed = (trials.groupby([hp, "seed"])["_value"].mean().unstack("seed")
                .reindex(values).to_numpy(float))
    found = not math.isnan(refined)  # some grid point has a finite loss
    if not found:
        interval, method = (math.nan, math.nan), "none"
    elif per_seed.shape[1] >= 2:
        interval, method = _bootstrap_interval(values, per_seed, n_boot, boot_seed), "bootstrap"
    else:
        interval = _band_interval(values, y, refined, band_tolerance)
        method = f"band(rel {band_tolerance:g})"
    shape_trials = prep.rows("trials", key)
    return {
        "parameterization": key[0],
        "alpha": shape_trials["alpha"].iloc[0] if "alpha" in shape_trials else math.nan,
        "width": key[1], "depth": key[2],
        "base_width": mode(shape_trials.get("base_width")),
        "base_depth": mode(shape_trials.get("base_depth")),
        "hp": hp,
        "optimum": values[i] if found else math.nan,
        "optimum_refined": refined,
        "interval_low": interval[0], "interval_high": interval[1],
        "interval_method": method,
        "loss": y[i] if found else math.inf,
        # An argmin on the first or last tested value is only a bound: the grid must be widened.
        "at_edge": bool(not found or i in (0, len(values) - 1)),
        "n_seeds": int(line["n_seeds"].iloc[i]) if len(line) else 0,
        "n_diverged": int(np.isinf(trials["_value"]).sum()),
        "n_error": n_error,
        "n_points": len(values),
    }


def optima(prep: Prepared, band_tolerance: float, n_boot: int, boot_seed: int) -> pd.DataFrame:
    keys = prep.keys()
    rows = [_optimum_row(prep, key, hp, band_tolerance, n_boot, boot_seed)
            for key in keys for hp in prep.hps]
    return pd.DataFrame(rows, columns=OPTIMA_COLUMNS)
