"""What not re-tuning costs (regret), and what a parameterization saves in FLOPs (savings)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .prepare import KEY, Prepared, hp_slice, log2, mode

REGRET_COLUMNS = [
    "parameterization", "width", "depth", "hp", "base_width", "base_depth", "base_optimum",
    "value_used", "loss_at_base_optimum", "own_min_loss", "regret_percent",
]
SAVINGS_COLUMNS = [
    "parameterization", "reference", "target_loss", "reference_flops", "flops_needed",
    "flop_ratio", "flops_saving_percent", "fit_intercept", "fit_slope", "r2", "n_shapes", "caveat",
]


def _base_shape(shapes: pd.DataFrame, width: int) -> tuple[int, int] | None:
    """The declared base shape if it was run; else the smallest depth at this width."""
    base = (mode(shapes.get("base_width")), mode(shapes.get("base_depth")))
    present = set(zip(shapes["width"], shapes["depth"]))
    if base in present:
        return base
    depths = shapes.loc[shapes["width"].eq(width), "depth"]
    return (width, int(depths.min())) if len(depths) else None


def _nearest(values: np.ndarray, target: float) -> int:
    """Index of the grid value nearest ``target`` in octaves (exact match for values ≤ 0)."""
    if target <= 0 or not (values > 0).any():
        return int(np.argmin(np.abs(values - target)))
    return int(np.nanargmin(np.abs(log2(values) - math.log2(target))))


def regret(prep: Prepared, optima: pd.DataFrame) -> pd.DataFrame:
    """Per shape and hp: 100 × (loss at the base shape's optimum − own min loss) / own min loss.

    inf when the base optimum diverges at that shape; 0 where the optima fall on the same grid value.
    """
    rows = []
    for (p, hp), group in optima.groupby(["parameterization", "hp"], sort=True):
        for shape in group.itertuples(index=False):
            base = _base_shape(group, shape.width)
            base_opt = group.loc[group["width"].eq(base[0]) & group["depth"].eq(base[1]),
                                 "optimum_refined"].iloc[0]
            line, _, _ = hp_slice(prep, (p, shape.width, shape.depth), hp)
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


# ---------------------------------------------------------------- compute savings


def shape_losses(prep: Prepared) -> pd.DataFrame:
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


def savings(shapes: pd.DataFrame, reference: str) -> pd.DataFrame:
    """FLOPs each parameterization needs to reach the reference's loss, from loss = a + b·ln(FLOPs).

    The log-linear fit (rather than a power law with an irreducible term) is chosen because a sweep
    spans a small compute range and three-parameter fits are not identifiable there. The loss to
    match is the reference's fitted loss at its largest run. ``flops_saving_percent`` > 0 means
    fewer FLOPs than the reference ("X% fewer FLOPs than µP"). Empty unless the reference has
    shapes with at least two distinct FLOPs.
    """
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
