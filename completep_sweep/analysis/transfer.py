"""The paper's questions as verdicts: does the optimum move (transfer), does depth pay (payoff)?

Transfer, per line (lines.py): the drift b, in octaves of the optimal HP per doubling of depth (or
width), with a calibrated 95% interval [lo, hi], against a tolerance T (default 0.5 octave per
doubling: the optimal learning rate may change by at most a factor sqrt(2) each time the model
doubles):
- transfers: the interval lies within [-T, T] (it moves less than T per doubling, confidently);
- drifts: the interval excludes 0 and is not within [-T, T] (it moves, confidently);
- inconclusive: otherwise, or when a shape's optimum sits on the edge of what was tested, with
  fewer than three shapes or one seed, or when the shapes' optima scatter about the line more than
  their noise explains; the reason names the data that would decide it.
Depth payoff, per depth line: the slope of each depth's best loss (at its own optimum, from the
fitted basin) against log2(depth), nats per doubling: helps (interval below 0), hurts (above 0),
flat (within +-1% of the loss per doubling), else inconclusive. The loss at the transferred base
optimum is this plus the regret (reported apart, and as ``slope_transferred``): where the optimum
transfers the two agree; where it drifts, the regret is what depth costs on top.
benchmarks/calibration.py measures how often each verdict is right on simulated sweeps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .lines import Line, sign_verdict, t975

DEFAULT_TOLERANCE = 0.5  # octaves per doubling
CHI2_95 = (3.841, 5.991, 7.815, 9.488, 11.07, 12.59, 14.07, 15.51, 16.92, 18.31)  # by degrees of freedom
PAYOFF_FLAT = 0.01  # fraction of the loss per doubling of depth

TRANSFER_COLUMNS = [
    "parameterization",
    "hp",
    "axis",
    "fixed_axis",
    "fixed_value",
    "slope",
    "slope_low",
    "slope_high",
    "shift_octaves",
    "shift_low",
    "shift_high",
    "n_shapes",
    "n_seeds",
    "verdict",
    "reason",
    "next_step",
    "tolerance",
    "base_axis_value",
    "line_at_base",
]
PAYOFF_COLUMNS = [
    "parameterization",
    "hp",
    "fixed_value",
    "base_value",
    "slope",
    "slope_low",
    "slope_high",
    "percent_per_doubling",
    "slope_transferred",
    "n_shapes",
    "verdict",
    "reason",
    "base_axis_value",
    "level_at_base",
]


def _seeds(line: Line) -> int:
    per_point = line.trials.groupby(["_shape", line.hp])["seed"].nunique()
    return int(per_point.max()) if len(per_point) else 0


def _edges(line: Line) -> list[int]:
    """Axis values whose seed-mean argmin is the first or last value tested there."""
    out = []
    for k, value in enumerate(line.values):
        at = line.trials[line.trials["_shape"].eq(k)]
        means = at.groupby(line.hp)["_value"].mean()
        finite = means[np.isfinite(means)]
        if finite.empty or finite.idxmin() in (means.index.min(), means.index.max()):
            out.append(int(value))
    return out


def _seeds_to_decide(line: Line, b: float, low: float, high: float, tol: float) -> str:
    """The interval shrinks like 1/sqrt(seeds): how many would put it inside +-T or away from 0."""
    half = (high - low) / 2
    target = max(tol - abs(b), abs(b))  # the easier of the two (never below T / 2)
    seeds = max(_seeds(line), 1)
    needed = math.ceil(seeds * (half / target) ** 2)
    if needed > 50:
        return (
            f"more than 50 seeds per point would be needed: test more {line.axis}s (a wider range "
            f"of {line.axis} narrows the drift's interval) and run the sweep again"
        )
    return (
        f"about {needed} seeds per point would decide it (now {seeds}): set seed = "
        f"[0, ..., {needed - 1}] in [grid] and run the sweep again (completep-sweep run SPEC)"
    )


def _scatter_half_width(line: Line) -> float:
    """Half-width of the 95% interval of the slope of the shapes' optima against t, from their
    residual scatter about the least-squares line."""
    t, mu = line.t, line.free.mu
    k = len(t)
    slope, intercept = np.polyfit(t, mu, 1)
    s2 = float(np.sum((mu - intercept - slope * t) ** 2)) / (k - 2)
    return t975(k - 2) * math.sqrt(s2 / float(np.sum((t - t.mean()) ** 2)))


def transfer_row(line: Line, tol: float) -> dict[str, Any]:
    b, low, high = line.drift()
    reasons, next_step, scatter = [], "", ""
    edges = _edges(line)
    if len(line.values) < 3:
        reasons.append(f"only {len(line.values)} {line.axis}s (need 3)")
        next_step = f"add a {line.axis} to the grid ({line.axis} = [...]) and run the sweep again"
    elif _seeds(line) < 2:
        reasons.append("one seed per point: seed-to-seed noise cannot be told apart from a drift")
        next_step = "set seed = [0, 1, 2] in [grid] and run the sweep again (completep-sweep run SPEC)"
    elif line.line is None:
        reasons.append("no basin could be fitted (need three or more values of the HP at every shape)")
        next_step = f"widen the {line.hp} grid and run the sweep again"
    elif edges:
        reasons.append(
            f"the optimum is on the edge of the tested values at {line.axis} {', '.join(map(str, edges))}"
        )
        next_step = (
            f"widen the {line.hp} grid past that edge (or a bracket search with a larger "
            f"max_extend) and run the sweep again"
        )
    else:
        chi2, dof = line.lack_of_fit()
        if 1 <= dof <= len(CHI2_95) and chi2 > CHI2_95[dof - 1]:
            # The optima scatter about the line more than their own intervals explain: the noise is
            # larger than measured, or the drift bends. Then the interval may be no narrower than the
            # scatter itself says: the slope of the shapes' optima with its Student t interval from
            # their residuals (K - 2 degrees of freedom).
            half = _scatter_half_width(line)
            low, high = min(low, b - half), max(high, b + half)
            scatter = (
                f"interval at least the optima's own scatter about a line in log2({line.axis}), "
                f"which is more than their noise explains (chi2 {chi2:.1f} on {dof} dof)"
            )
    if reasons:
        verdict = "inconclusive"
    elif -tol <= low and high <= tol:
        verdict = "transfers"
        reasons.append(f"drift {b:+.2f} [{low:+.2f}, {high:+.2f}] octave per doubling, within ±{tol:g}")
    elif low > 0 or high < 0:
        verdict = "drifts"
        reasons.append(f"drift {b:+.2f} [{low:+.2f}, {high:+.2f}] octave per doubling excludes 0")
    else:
        verdict = "inconclusive"
        reasons.append(f"drift {b:+.2f} [{low:+.2f}, {high:+.2f}] octave per doubling spans 0 and ±{tol:g}")
        next_step = _seeds_to_decide(line, b, low, high, tol)
        if scatter:
            next_step += (
                f"; if the optima table shows a bend rather than scatter, the optimum does not "
                f"move linearly in log2({line.axis})"
            )
    if scatter:
        reasons.append(scatter)
    span = line.doublings
    return {
        "parameterization": line.parameterization,
        "hp": line.hp,
        "axis": line.axis,
        "fixed_axis": line.fixed_axis,
        "fixed_value": line.fixed_value,
        "slope": b,
        "slope_low": low,
        "slope_high": high,
        "shift_octaves": b * span,
        "shift_low": low * span,
        "shift_high": high * span,
        "n_shapes": len(line.values),
        "n_seeds": _seeds(line),
        "verdict": verdict,
        "reason": "; ".join(reasons),
        "next_step": next_step,
        "tolerance": tol,
        "base_axis_value": int(line.values[line.base]),  # the fitted line: log2 optimum at the base shape
        "line_at_base": float(line.line.mu[line.base]) if line.line is not None else math.nan,
    }


def transfer_table(lines: list[Line], tol: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    rows = [transfer_row(line, tol) for line in lines if len(line.values) >= 2]
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def payoff_row(line: Line) -> dict[str, Any]:
    slope, low, high = line.payoff()
    level = float(np.nanmean(line.free.level)) if line.free is not None else math.nan
    flat = PAYOFF_FLAT * level
    if len(line.values) < 3 or not math.isfinite(low):
        verdict, reason = (
            "inconclusive",
            (
                f"only {len(line.values)} depths (need 3)"
                if len(line.values) < 3
                else "no basin could be fitted"
            ),
        )
    else:
        verdict = sign_verdict(low, high, flat, ("helps", "hurts", "flat"))
        interval = f"{slope:+.4f} [{low:+.4f}, {high:+.4f}] nats per doubling"
        reason = {
            "helps": f"loss falls {interval}",
            "hurts": f"loss rises {interval}",
            "flat": f"{interval}, within ±{flat:.3f}",
        }.get(verdict, f"{interval} spans 0")
    base = line.base_optimum()
    return {
        "parameterization": line.parameterization,
        "hp": line.hp,
        "fixed_value": line.fixed_value,
        "base_value": 2.0**base if math.isfinite(base) else math.nan,
        "slope": slope,
        "slope_low": low,
        "slope_high": high,
        "percent_per_doubling": 100 * slope / level if level else math.nan,
        "slope_transferred": line.payoff(transferred=True)[0],
        "n_shapes": len(line.values),
        "verdict": verdict,
        "reason": reason,
        "base_axis_value": int(line.values[line.base]),
        "level_at_base": float(np.polyval(np.polyfit(line.t, line.free.level, 1), line.t[line.base]))
        if line.free is not None and len(line.values) >= 2
        else math.nan,
    }


def payoff_table(lines: list[Line]) -> pd.DataFrame:
    rows = [payoff_row(line) for line in lines if line.axis == "depth" and len(line.values) >= 2]
    return pd.DataFrame(rows, columns=PAYOFF_COLUMNS)
