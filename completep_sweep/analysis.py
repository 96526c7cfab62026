"""Transfer analysis of a sweep: optimal base HPs per shape, their drift, and what not re-tuning costs.

Input is the trials DataFrame (one row per trial, the ``TrialResult.row()`` schema, deduplicated).
Pure pandas/numpy: no Ray, no MLflow, no plotting. Conventions (DESIGN.md, "Analysis, stated plainly"):

- A shape is (width, depth); the group key is (parameterization, width, depth).
- Loss per trial: ``loss`` (default final_val_loss). A ``diverged`` trial, or an ``ok`` trial whose loss
  is not finite, counts as +inf. ``error`` trials are excluded and counted. Pending trials are absent.
- Seeds are averaged per grid point; one diverged seed makes the point inf (a learning rate that
  diverges for some seeds is not usable).
- Swept HPs are the numeric config columns that vary in the data (budget columns such as steps
  count too if a sweep varies them; the analysis then reports what it sees). Categorical config
  columns that vary (e.g. ``decay``) are part of the HP combination but get no optimum of their own.
- The optimum of one HP is taken along the 1-D slice through the shape's best HP combination.
- All HP arithmetic is in log2(HP) ("octaves"): the grids are powers of two and the transfer
  tolerance is stated in octaves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .parameterization import GROUPS, scaling_rules
from .trial import TrialConfig

CONFIG_FIELDS = TrialConfig.field_names()

SHAPE = ("width", "depth")
KEY = ("parameterization", "width", "depth")
# Config columns that are never swept HPs: the shape, the architecture fixed by the preset, the
# seed (averaged over), and bookkeeping that cannot change the loss.
NOT_HP = frozenset({
    "trial_id", "sweep", "model", "parameterization", "alpha", "width", "depth", "base_width",
    "base_depth", "head_dim", "vocab_size", "seq_len", "mlp_ratio", "seed", "eval_interval",
    "eval_batches", "divergence_factor",
})
BASE_HPS = ("lr", "init_std", "weight_decay", "eps")  # the HPs the scaling rules multiply

DEFAULT_BAND_TOLERANCE = 0.01  # one-seed band: loss within 1% (relative) of the slice minimum
N_BOOTSTRAP = 400
BOOTSTRAP_SEED = 0  # fixed so that the same trials always give the same intervals
# No per-shape optimum is treated as known better than ±0.1 octave in the drift fit: keeps a
# zero-width interval (noise-free seeds) from getting infinite weight.
SIGMA_FLOOR_OCTAVES = 0.1
Z95 = 1.959964
# Student t 0.975 quantiles for 1..30 degrees of freedom (beyond: Cornish-Fisher expansion).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

OPTIMA_COLUMNS = [
    "parameterization", "alpha", "width", "depth", "base_width", "base_depth", "hp", "optimum",
    "optimum_refined", "interval_low", "interval_high", "interval_method", "loss", "at_edge",
    "n_seeds", "n_diverged", "n_error", "n_points",
]
TRANSFER_COLUMNS = [
    "parameterization", "hp", "axis", "fixed_axis", "fixed_value", "slope", "slope_low",
    "slope_high", "shift_octaves", "shift_low", "shift_high", "endpoint_shift_octaves",
    "n_shapes", "verdict", "reason", "tolerance_octaves",
]
REGRET_COLUMNS = [
    "parameterization", "width", "depth", "hp", "base_width", "base_depth", "base_optimum",
    "value_used", "loss_at_base_optimum", "own_min_loss", "regret_percent",
]
SAVINGS_COLUMNS = [
    "parameterization", "reference", "target_loss", "reference_flops", "flops_needed",
    "flop_ratio", "flops_saving_percent", "fit_intercept", "fit_slope", "r2", "n_shapes", "caveat",
]


# ---------------------------------------------------------------- preparation


@dataclass(frozen=True, eq=False)
class _Prepared:
    trials: pd.DataFrame  # non-error trials with a `_value` column (loss, inf if diverged)
    errors: pd.DataFrame  # error trials, excluded but counted
    hps: tuple[str, ...]  # swept numeric HPs
    combo: tuple[str, ...]  # all varying config columns that define a grid point (hps first)
    points: pd.DataFrame  # seed-mean per (key, combo): loss, n_seeds, n_diverged
    by_shape: dict[str, dict[tuple, pd.DataFrame]]  # "points"/"trials"/"errors" -> key -> rows

    def rows(self, kind: str, key: tuple) -> pd.DataFrame:
        """Rows of ``kind`` at one (parameterization, width, depth); split once, looked up often."""
        found = self.by_shape[kind].get(tuple(key))
        return found if found is not None else getattr(self, kind).iloc[:0]


def _config_columns(trials: pd.DataFrame) -> list[str]:
    """Inputs of a trial (TrialConfig's fields), never outcomes or provenance (worker, code_version)."""
    return [c for c in CONFIG_FIELDS if c in trials.columns and c not in NOT_HP]


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def swept_hps(trials: pd.DataFrame) -> tuple[str, ...]:
    """Numeric config columns that take more than one value in ``trials`` (in column order)."""
    return tuple(c for c in _config_columns(trials)
                 if _is_numeric(trials[c]) and trials[c].nunique(dropna=True) > 1)


def _prepare(trials: pd.DataFrame, loss: str) -> _Prepared:
    missing = [c for c in (*KEY, "seed", "status", loss) if c not in trials.columns]
    if missing:
        raise ValueError(f"trials DataFrame lacks column(s) {missing}; expected TrialResult.row() rows")
    is_error = trials["status"].eq("error")
    df = trials.loc[~is_error].copy()
    value = pd.to_numeric(df[loss], errors="coerce").astype(float)
    # A NaN loss on an 'ok' row means the run blew up without being flagged: count it as diverged.
    df["_value"] = np.where(df["status"].eq("ok") & np.isfinite(value), value, np.inf)
    hps = swept_hps(trials)
    categorical = tuple(c for c in _config_columns(trials)
                        if c not in hps and trials[c].astype(str).nunique() > 1)
    combo = hps + categorical
    keys = list(KEY) + list(combo)
    points = (df.groupby(keys, dropna=False, sort=True)
              .agg(loss=("_value", "mean"), n_seeds=("seed", "nunique"),
                   n_diverged=("_value", lambda v: int(np.isinf(v).sum())))
              .reset_index())
    errors = trials.loc[is_error]
    by_shape = {kind: {k: g for k, g in frame.groupby(list(KEY), sort=False)}
                for kind, frame in (("points", points), ("trials", df), ("errors", errors))}
    return _Prepared(df, errors, hps, combo, points, by_shape)


def _match(df: pd.DataFrame, values: dict[str, Any]) -> pd.Series:
    """Rows whose columns equal ``values`` (NaN equals NaN, as in a groupby with dropna=False)."""
    mask = pd.Series(True, index=df.index)
    for col, v in values.items():
        mask &= (df[col].isna() if pd.isna(v) else df[col].eq(v))
    return mask


def _best_combo(points: pd.DataFrame, combo: Iterable[str]) -> dict[str, Any]:
    """The HP combination with the lowest seed-mean loss at one shape (first row if all diverged)."""
    best = points.sort_values("loss", kind="stable").iloc[0]
    return {c: best[c] for c in combo}


# ---------------------------------------------------------------- one-dimensional optimum


def _refined_optimum(values: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid argmin index and refined optimum (in HP units) for each row of ``y`` (shape B × n).

    Refinement: the vertex of the parabola in log2(HP) through the argmin and its two neighbours,
    when the argmin is interior, all three losses are finite and the parabola is convex; otherwise
    the argmin itself (also when a value is ≤ 0, e.g. weight_decay 0, where log2 is undefined).
    Because the middle point is the lowest of the three, the vertex lies between the neighbours.
    Rows with no finite loss give NaN.
    """
    x = _log2(values)
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
    _, refined = _refined_optimum(values, mean)
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


def _log2(v: np.ndarray | float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log2(np.where(np.asarray(v, dtype=float) > 0, v, np.nan))


def _slice(prep: _Prepared, key: tuple, hp: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Seed-mean points, per-trial rows and error count of the 1-D slice along ``hp`` at one shape."""
    points = prep.rows("points", key)
    fixed = {c: v for c, v in _best_combo(points, prep.combo).items() if c != hp}
    line = points[_match(points, fixed)].sort_values(hp)
    line = line[line[hp].notna()]
    trials = prep.rows("trials", key)
    trials = trials[_match(trials, fixed)]
    errors = prep.rows("errors", key)
    n_error = int(_match(errors, fixed).sum()) if len(errors) else 0
    return line, trials, n_error


def hp_slice(trials: pd.DataFrame, *, parameterization: str, width: int, depth: int, hp: str,
             loss: str = "final_val_loss") -> pd.DataFrame:
    """The 1-D slice along ``hp`` at one shape, other swept HPs at the shape's best combination.

    Columns: ``hp`` values, loss (seed mean, inf if a seed diverged), n_seeds, n_diverged, and the
    fixed values of the other varying config columns (constant down the slice).
    """
    line, _, _ = _slice(_prepare(trials, loss), (parameterization, width, depth), hp)
    return line.drop(columns=list(KEY)).reset_index(drop=True)


def slice_table(trials: pd.DataFrame, *, hp: str, loss: str = "final_val_loss") -> pd.DataFrame:
    """``hp_slice`` for every shape at once, with the key columns (what the loss-curve plots draw)."""
    prep = _prepare(trials, loss)
    keys = sorted(prep.points[list(KEY)].drop_duplicates().itertuples(index=False, name=None))
    lines = [_slice(prep, key, hp)[0] for key in keys]
    return pd.concat(lines, ignore_index=True) if lines else pd.DataFrame(columns=[*KEY, hp, "loss"])


def _optimum_row(prep: _Prepared, key: tuple, hp: str, band_tolerance: float,
                 n_boot: int, boot_seed: int) -> dict[str, Any]:
    line, trials, n_error = _slice(prep, key, hp)
    values, y = line[hp].to_numpy(float), line["loss"].to_numpy(float)
    i, refined = _refined_optimum(values, y[None, :])
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
        "base_width": _mode(shape_trials.get("base_width")),
        "base_depth": _mode(shape_trials.get("base_depth")),
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


def _mode(s: pd.Series | None) -> Any:
    if s is None or s.dropna().empty:
        return pd.NA
    return s.mode().iloc[0]


def _optima(prep: _Prepared, band_tolerance: float, n_boot: int, boot_seed: int) -> pd.DataFrame:
    keys = prep.points[list(KEY)].drop_duplicates().itertuples(index=False, name=None)
    rows = [_optimum_row(prep, key, hp, band_tolerance, n_boot, boot_seed)
            for key in sorted(keys) for hp in prep.hps]
    return pd.DataFrame(rows, columns=OPTIMA_COLUMNS)


def optimum_table(trials: pd.DataFrame, *, loss: str = "final_val_loss",
                  band_tolerance: float = DEFAULT_BAND_TOLERANCE, n_bootstrap: int = N_BOOTSTRAP,
                  bootstrap_seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """One row per (parameterization, width, depth, swept hp): see OPTIMA_COLUMNS."""
    return _optima(_prepare(trials, loss), band_tolerance, n_bootstrap, bootstrap_seed)


# ---------------------------------------------------------------- drift and verdict


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
    base = _mode(rows.get(f"base_{other}"))
    return base if base in set(best) else min(best)


def _transfer_row(rows: pd.DataFrame, axis: str, tolerance: float) -> dict[str, Any]:
    other = "width" if axis == "depth" else "depth"
    fixed = _fixed_value(rows, axis, other)
    line = rows[rows[other].eq(fixed)].sort_values(axis)
    x = np.log2(line[axis].to_numpy(float))
    y = _log2(line["optimum_refined"].to_numpy(float))
    half_width = (_log2(line["interval_high"].to_numpy(float))
                  - _log2(line["interval_low"].to_numpy(float))) / (2 * Z95)
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


# ---------------------------------------------------------------- regret


def _base_shape(shapes: pd.DataFrame, width: int) -> tuple[int, int] | None:
    """The declared base shape if it was run; else the smallest depth at this width."""
    base = (_mode(shapes.get("base_width")), _mode(shapes.get("base_depth")))
    present = set(zip(shapes["width"], shapes["depth"]))
    if base in present:
        return base
    depths = shapes.loc[shapes["width"].eq(width), "depth"]
    return (width, int(depths.min())) if len(depths) else None


def _nearest(values: np.ndarray, target: float) -> int:
    """Index of the grid value nearest ``target`` in octaves (exact match for values ≤ 0)."""
    if target <= 0 or not (values > 0).any():
        return int(np.argmin(np.abs(values - target)))
    return int(np.nanargmin(np.abs(_log2(values) - math.log2(target))))


def _regret(prep: _Prepared, optima: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (p, hp), group in optima.groupby(["parameterization", "hp"], sort=True):
        for shape in group.itertuples(index=False):
            base = _base_shape(group, shape.width)
            base_opt = group.loc[group["width"].eq(base[0]) & group["depth"].eq(base[1]),
                                 "optimum_refined"].iloc[0]
            line, _, _ = _slice(prep, (p, shape.width, shape.depth), hp)
            values, losses = line[hp].to_numpy(float), line["loss"].to_numpy(float)
            own_min = losses.min() if len(losses) else math.nan
            if not (math.isfinite(base_opt) and math.isfinite(own_min)):
                used = at_base = regret = math.nan
            else:
                # Nearest tested value in octaves: the base optimum is a base HP in the same units
                # at every shape (the rules apply the multipliers), so it can be read off directly.
                j = _nearest(values, base_opt)
                used, at_base = values[j], losses[j]
                regret = 100.0 * (at_base - own_min) / own_min
            rows.append({
                "parameterization": p, "width": shape.width, "depth": shape.depth, "hp": hp,
                "base_width": base[0], "base_depth": base[1], "base_optimum": base_opt,
                "value_used": used, "loss_at_base_optimum": at_base, "own_min_loss": own_min,
                "regret_percent": regret,
            })
    return pd.DataFrame(rows, columns=REGRET_COLUMNS)


def regret_table(trials: pd.DataFrame, optima: pd.DataFrame, *,
                 loss: str = "final_val_loss") -> pd.DataFrame:
    """Per shape and hp: 100 × (loss at the base shape's optimum − own min loss) / own min loss.

    inf when the base optimum diverges at that shape; 0 where the optima fall on the same grid value.
    """
    return _regret(_prepare(trials, loss), optima)


# ---------------------------------------------------------------- compute savings


def _shape_losses(prep: _Prepared) -> pd.DataFrame:
    """Per shape: the loss at tuned HPs (lowest seed-mean loss of any combination) and FLOPs."""
    best = prep.points.groupby(list(KEY))["loss"].min()
    flops = prep.trials.groupby(list(KEY))["flops"].median() if "flops" in prep.trials else None
    out = best.to_frame("loss")
    out["flops"] = flops if flops is not None else math.nan
    return out.reset_index()


def _fit_log(flops: np.ndarray, loss: np.ndarray) -> tuple[float, float, float]:
    """loss = a + b·ln(FLOPs) by least squares; returns (a, b, R²)."""
    b, a = np.polyfit(np.log(flops), loss, 1)
    residual = loss - (a + b * np.log(flops))
    total = np.sum((loss - loss.mean()) ** 2)
    return float(a), float(b), float(1.0 - np.sum(residual**2) / total) if total > 0 else math.nan


def _savings(shapes: pd.DataFrame, reference: str) -> pd.DataFrame:
    usable = shapes[np.isfinite(shapes["loss"]) & (shapes["flops"] > 0)]
    ref = usable[usable["parameterization"].eq(reference)]
    if ref["flops"].nunique() < 2:
        return pd.DataFrame(columns=SAVINGS_COLUMNS)
    a_ref, b_ref, _ = _fit_log(ref["flops"].to_numpy(float), ref["loss"].to_numpy(float))
    # Compare at the loss the reference's fit gives at its largest run: the end that matters.
    ref_flops = float(ref["flops"].max())
    target = a_ref + b_ref * math.log(ref_flops)
    rows = []
    for p, group in usable.groupby("parameterization", sort=True):
        f, l = group["flops"].to_numpy(float), group["loss"].to_numpy(float)
        caveats: list[str] = []
        a = b = r2 = needed = math.nan
        if len(np.unique(f)) >= 2:
            a, b, r2 = _fit_log(f, l)
        if len(group) < 3:
            caveats.append(f"only {len(group)} shapes")
        if not r2 >= 0.9:
            caveats.append(f"poor fit (R²={r2:.2f})")
        if b < 0:
            needed = math.exp((target - a) / b)
            if not f.min() <= needed <= f.max():
                caveats.append("extrapolated beyond the tested FLOPs")
        else:
            caveats.append("loss does not fall with FLOPs")
        ratio = needed / ref_flops
        rows.append({
            "parameterization": p, "reference": reference, "target_loss": target,
            "reference_flops": ref_flops, "flops_needed": needed, "flop_ratio": ratio,
            "flops_saving_percent": 100.0 * (1.0 - ratio), "fit_intercept": a, "fit_slope": b,
            "r2": r2, "n_shapes": len(group), "caveat": "; ".join(caveats),
        })
    return pd.DataFrame(rows, columns=SAVINGS_COLUMNS)


def savings_table(trials: pd.DataFrame, *, loss: str = "final_val_loss",
                  reference: str = "mup") -> pd.DataFrame:
    """FLOPs each parameterization needs to reach the reference's loss, from loss = a + b·ln(FLOPs).

    The log-linear fit (rather than a power law with an irreducible term) is chosen because a sweep
    spans a small compute range and three-parameter fits are not identifiable there. The loss to
    match is the reference's fitted loss at its largest run. ``flops_saving_percent`` > 0 means
    fewer FLOPs than the reference ("X% fewer FLOPs than µP"). Empty unless the reference has
    shapes with at least two distinct FLOPs.
    """
    return _savings(_shape_losses(_prepare(trials, loss)), reference)


# ---------------------------------------------------------------- base HPs and the entry point


def _base_hps(prep: _Prepared, optima: pd.DataFrame) -> pd.DataFrame:
    """Per parameterization: the HPs to transfer, read at the declared base shape when it was run,
    else at the run shape nearest to it in octaves. Swept HPs take their refined optimum; the
    others keep the value the trials used. Every value is a base HP (η_base, σ_base, ...)."""
    rows = []
    for p, group in optima.groupby("parameterization", sort=True):
        base_w, base_d = int(_mode(group["base_width"])), int(_mode(group["base_depth"]))
        distance = (np.abs(np.log2(group["width"] / base_w)) + np.abs(np.log2(group["depth"] / base_d)))
        at = group.loc[distance.idxmin()]
        key = (p, int(at["width"]), int(at["depth"]))
        points = prep.rows("points", key)
        row = {"parameterization": p, "base_width": base_w, "base_depth": base_d,
               "tuned_width": key[1], "tuned_depth": key[2]}
        best = _best_combo(points, prep.combo)
        trials = prep.rows("trials", key)
        for hp in BASE_HPS:
            row[hp] = best[hp] if hp in best else (_mode(trials[hp]) if hp in trials else math.nan)
        tuned = group[group["width"].eq(key[1]) & group["depth"].eq(key[2])]
        for r in tuned.itertuples(index=False):
            row[r.hp] = r.optimum_refined
        row["any_at_edge"] = bool(tuned["at_edge"].any())
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything ``analyze`` found, with the settings that produced it."""

    optima: pd.DataFrame
    transfer: pd.DataFrame
    regret: pd.DataFrame
    savings: pd.DataFrame
    base_hps: pd.DataFrame
    hps: tuple[str, ...]
    tolerance_octaves: float
    loss: str
    band_tolerance: float
    savings_reference: str
    n_error: int

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI's JSON contract; non-finite numbers become null so the output is strict JSON."""
        optima = self.optima.assign(interval=list(zip(self.optima["interval_low"],
                                                      self.optima["interval_high"])))
        transfer = self.transfer.assign(slope_interval=list(zip(self.transfer["slope_low"],
                                                                self.transfer["slope_high"])))
        return {
            "optima": records(optima),
            "transfer": records(transfer),
            "regret": records(self.regret),
            "savings": records(self.savings),
            "tolerance_octaves": json_value(self.tolerance_octaves),
        }


def json_value(v: Any) -> Any:
    """A plain JSON value: numpy scalars unwrapped, NaN/inf/NA → None, tuples → lists."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [json_value(x) for x in v]
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v if isinstance(v, str) else str(v)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame → list of JSON-ready dicts (see ``json_value``)."""
    return [{str(k): json_value(v) for k, v in row.items()} for row in df.to_dict("records")]


def analyze(trials: pd.DataFrame, *, tolerance_octaves: float = 1.0, loss: str = "final_val_loss",
            band_tolerance: float = DEFAULT_BAND_TOLERANCE, savings_reference: str = "mup",
            n_bootstrap: int = N_BOOTSTRAP, bootstrap_seed: int = BOOTSTRAP_SEED) -> Analysis:
    """Optima per shape, drift and verdict, regret, and compute savings for one trials DataFrame."""
    if not tolerance_octaves > 0:
        raise ValueError(f"tolerance_octaves must be > 0 (got {tolerance_octaves!r})")
    prep = _prepare(trials, loss)
    if not prep.hps:
        raise ValueError("no swept HP: no numeric config column (lr, init_std, ...) varies in the trials")
    optima = _optima(prep, band_tolerance, n_bootstrap, bootstrap_seed)
    return Analysis(
        optima=optima,
        transfer=transfer_table(optima, tolerance_octaves=tolerance_octaves),
        regret=_regret(prep, optima),
        savings=_savings(_shape_losses(prep), savings_reference),
        base_hps=_base_hps(prep, optima),
        hps=prep.hps,
        tolerance_octaves=tolerance_octaves,
        loss=loss,
        band_tolerance=band_tolerance,
        savings_reference=savings_reference,
        n_error=len(prep.errors),
    )


def transferred_hps(analysis: Analysis, *, target_width: int, target_depth: int) -> pd.DataFrame:
    """Per parameterization and parameter group: the values a run at the target shape should use.

    Base HPs (``analysis.base_hps``) times the group multipliers of ``scaling_rules`` at the target
    shape relative to the base shape. init_std is NaN for groups with a fixed init (norms, biases);
    weight_decay is 0 for groups that never decay.
    """
    rows = []
    for b in analysis.base_hps.itertuples(index=False):
        rules = scaling_rules(b.parameterization, width=target_width, depth=target_depth,
                              base_width=b.base_width, base_depth=b.base_depth)
        for group in GROUPS:
            g = rules.groups[group]
            rows.append({
                "parameterization": b.parameterization, "group": group,
                "target_width": target_width, "target_depth": target_depth,
                "base_width": b.base_width, "base_depth": b.base_depth,
                "lr": b.lr * g.lr_mult,
                "init_std": b.init_std * g.init_std_mult if g.init_std_mult is not None else math.nan,
                "weight_decay": b.weight_decay * g.weight_decay_mult,
                "eps": b.eps * g.eps_mult,
                "residual_multiplier": rules.residual_multiplier,
                "output_multiplier": rules.output_multiplier,
                "base_lr": b.lr, "base_init_std": b.init_std,
                "tuned_width": b.tuned_width, "tuned_depth": b.tuned_depth,
                "any_at_edge": b.any_at_edge,
            })
    return pd.DataFrame(rows)
