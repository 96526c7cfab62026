"""What not re-tuning costs (regret), and what a parameterization saves in FLOPs (savings).

Savings come from loss = a + b·ln(FLOPs) per parameterization, compared at the reference's loss at
its largest run; a percentage is printed only where the fit interpolates within the FLOPs that
parameterization tested, with three or more shapes and R² >= 0.9; otherwise "n/a" and the reason.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .lines import Line
from .prepare import KEY, Prepared

REGRET_COLUMNS = [
    "parameterization",
    "width",
    "depth",
    "hp",
    "base_depth",
    "base_optimum",
    "regret_percent",
    "regret_low",
    "regret_high",
    "regret_measured",
    "gain_percent",
]
SAVINGS_COLUMNS = [
    "parameterization",
    "reference",
    "target_loss",
    "reference_flops",
    "flops_needed",
    "flop_ratio",
    "flops_saving_percent",
    "fit_intercept",
    "fit_slope",
    "r2",
    "n_shapes",
    "caveat",
]


def regret(lines: list[Line]) -> pd.DataFrame:
    """Per shape of each depth line: percent more loss at the base shape's optimum than at the
    shape's own best (read from its curve, lines.Line.regret), with a 95% interval; the regret
    measured at the tested value nearest the base optimum; and the shape's gain over the base (its
    best loss below the base shape's, in percent), beside which a regret is small or not. 0 at the
    base shape; inf where the base optimum diverged; NaN where it was not tested."""
    rows = []
    for line in lines:
        if line.axis != "depth" or not line.curves:
            continue
        base = 2.0 ** line.base_optimum()
        levels = line.levels()
        for value, level, (est, low, high, measured) in zip(line.values, levels, line.regret()):
            gain = (
                100.0 * (levels[line.base] - level) / levels[line.base] if levels[line.base] > 0 else math.nan
            )
            rows.append(
                {
                    "parameterization": line.parameterization,
                    "width": line.fixed_value,
                    "depth": int(value),
                    "hp": line.hp,
                    "base_depth": int(line.values[line.base]),
                    "base_optimum": base,
                    "regret_percent": est,
                    "regret_low": low,
                    "regret_high": high,
                    "regret_measured": measured,
                    "gain_percent": gain,
                }
            )
    return pd.DataFrame(rows, columns=REGRET_COLUMNS)


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
        f, loss = group["flops"].to_numpy(float), group["loss"].to_numpy(float)
        caveats: list[str] = []
        a = b = r2 = needed = math.nan
        if len(np.unique(f)) >= 2:
            a, b, r2 = _fit_log(f, loss)
        if len(group) < 3:
            caveats.append(f"only {len(group)} shapes")
        if not r2 >= 0.9:
            caveats.append(f"poor fit (R²={r2:.2f})")
        if b < 0:
            needed = math.exp((target - a) / b)
            if not f.min() * (1 - 1e-9) <= needed <= f.max() * (1 + 1e-9):
                caveats.append("it would extrapolate beyond the tested FLOPs")
        else:
            caveats.append("loss does not fall with FLOPs")
        if caveats:  # never a percentage from an extrapolated or poor fit
            needed = math.nan
            caveats.insert(0, "n/a")
        ratio = needed / ref_flops
        rows.append(
            {
                "parameterization": p,
                "reference": reference,
                "target_loss": target,
                "reference_flops": ref_flops,
                "flops_needed": needed,
                "flop_ratio": ratio,
                "flops_saving_percent": 100.0 * (1.0 - ratio),
                "fit_intercept": a,
                "fit_slope": b,
                "r2": r2,
                "n_shapes": len(group),
                "caveat": "; ".join(caveats),
            }
        )
    return pd.DataFrame(rows, columns=SAVINGS_COLUMNS)
