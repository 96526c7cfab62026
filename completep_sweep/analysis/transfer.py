"""The paper's questions as verdicts: can the base optimum be kept (transfer), does depth pay?

Transfer, per line (lines.py), decided on the number a user acts on: the regret of keeping the base
shape's optimum, in percent of each shape's best loss, against a tolerance ε (``--regret-tolerance``,
default 1%):
- keep: at every tested shape the regret's 95% interval ends below ε, and so does the regret
  measured at the tested value nearest the base optimum;
- re-tune: at the deepest (or widest) tested shape the regret's interval starts above ε (keeping the
  base optimum diverges there: infinite regret);
- inconclusive: otherwise, or with one seed, or when the base optimum sits on the edge of what was
  tested, or was not tested at a shape; the reason names the data that would decide it.
The three are exclusive by construction. Reported beside it, never a verdict of its own: the drift
of the shapes' optima in octaves per doubling (its 95% interval), whose extrapolation export uses.
Depth payoff, per depth line: the slope of each depth's best loss (its own best tested value)
against log2(depth), nats per doubling: helps (interval below 0), hurts (above 0), flat (it
includes 0 and lies within ±``payoff_flat`` of the loss per doubling), else inconclusive.
benchmarks/calibration.py measures how often each verdict is right on simulated studies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .curve import t_factor
from .lines import Line, sign_verdict

DEFAULT_TOLERANCE = 1.0  # percent of loss: the regret keeping the base optimum may cost
KEEP, RETUNE, INCONCLUSIVE = "keep", "re-tune", "inconclusive"

TRANSFER_COLUMNS = [
    "parameterization",
    "hp",
    "axis",
    "fixed_axis",
    "fixed_value",
    "verdict",
    "regret_tolerance",
    "worst_regret",
    "worst_regret_low",
    "worst_regret_high",
    "worst_at",
    "deepest_regret",
    "deepest_regret_low",
    "deepest_regret_high",
    "slope",
    "slope_low",
    "slope_high",
    "shift_octaves",
    "shift_low",
    "shift_high",
    "n_shapes",
    "n_seeds",
    "reason",
    "next_step",
    "base_axis_value",
    "line_at_base",
    "base_optimum",
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


def _seeds_to_decide(line: Line, est: float, low: float, high: float, tol: float) -> str:
    """The interval shrinks like 1/sqrt(seeds): how many would move its side that crosses ε clear
    of it (the lower side when the estimate is above ε, the upper side when below)."""
    side = (est - low) if est > tol else (high - est)
    gap = max(abs(est - tol), tol / 4)
    seeds = max(_seeds(line), 1)
    # The side also carries the t / z widening of a noise pooled over few degrees of freedom
    # (curve.t_factor), which shrinks as seeds add degrees of freedom: take it out, then put back
    # the widening those seeds would have.
    dof = line.curves[line.base].noise_dof() if line.curves else 0
    bare = side / t_factor(dof)
    needed = math.ceil(seeds * (bare / gap) ** 2)
    then = dof * (needed - 1) // max(seeds - 1, 1) if dof else 0
    needed = math.ceil(seeds * (bare * t_factor(then) / gap) ** 2)
    needed = max(seeds + 1, needed) if side > 0 else seeds + 1
    if needed > 50:
        return (
            f"more than 50 seeds per point would be needed: test values closer to the optimum at {line.axis} "
            f"{int(line.values[-1])} (a finer {line.hp} grid) and run the sweep again"
        )
    return (
        f"about {needed} seeds per point would decide it (now {seeds}): set seed = [0, ..., {needed - 1}] in "
        "[grid] and run the sweep again (completep-sweep run SPEC)"
    )


def _edge_of_base(line: Line) -> bool:
    curve = line.curves[line.base] if line.curves else None
    i = curve.best() if curve is not None else None
    return i is None or i in (0, len(curve.x) - 1)


def transfer_row(line: Line, tol: float) -> dict[str, Any]:
    b, low, high = line.drift()
    regrets = line.regret()
    keep = line.base_optimum()
    others = [k for k in range(len(line.values)) if k != line.base]
    deepest = len(line.values) - 1 if line.base != len(line.values) - 1 else 0
    reasons, next_step = [], ""
    worst = max(
        others, key=lambda k: regrets[k][2] if math.isfinite(regrets[k][2]) else math.inf, default=None
    )
    missing = [int(line.values[k]) for k in others if math.isnan(regrets[k][0])]
    if _seeds(line) < 2:
        verdict = INCONCLUSIVE
        reasons.append("one seed per point: seed-to-seed noise cannot be told apart from a regret")
        next_step = "set seed = [0, 1, 2] in [grid] and run the sweep again (completep-sweep run SPEC)"
    elif _edge_of_base(line):
        verdict = INCONCLUSIVE
        reasons.append(f"the base optimum is on the edge of the {line.hp} values tested at the base shape")
        next_step = f"widen the {line.hp} grid past that edge and run the sweep again"
    elif missing:
        verdict = INCONCLUSIVE
        reasons.append(
            f"the base optimum 2^{keep:.2f} was not tested at {line.axis} {', '.join(map(str, missing))}"
        )
        next_step = f"widen the {line.hp} grid there to include 2^{keep:.2f} and run the sweep again"
    else:
        d_est, d_low, d_high, _ = regrets[deepest]
        measured = [
            regrets[k][3] for k in others if math.isfinite(regrets[k][3]) or math.isinf(regrets[k][3])
        ]
        if all(regrets[k][2] <= tol for k in others) and all(m <= tol for m in measured):
            verdict = KEEP
            w = regrets[worst] if worst is not None else (0.0, 0.0, 0.0, 0.0)
            reasons.append(f"keeping it costs at most {w[0]:.2f}% [{w[1]:.2f}, {w[2]:.2f}] (≤ {tol:g}%)")
        elif d_low > tol:
            verdict = RETUNE
            cost = (
                "it diverges" if math.isinf(d_est) else f"it costs {d_est:.1f}% [{d_low:.1f}, {d_high:.1f}]"
            )
            reasons.append(f"at {line.axis} {int(line.values[deepest])} {cost} (> {tol:g}%)")
        else:
            verdict = INCONCLUSIVE
            k = worst if worst is not None else deepest
            e, lo, hi, _ = regrets[k]
            where = f"at {line.axis} {int(line.values[k])}"
            if lo > tol:  # firmly above ε somewhere, but not at the deepest shape
                reasons.append(
                    f"{where} keeping it costs {e:.2f}% [{lo:.2f}, {hi:.2f}] (> {tol:g}%), but at "
                    f"{line.axis} {int(line.values[deepest])} {d_est:.2f}% [{d_low:.2f}, {d_high:.2f}]: "
                    "the cost does not grow with depth"
                )
                next_step = f"re-tune at least at {line.axis} {int(line.values[k])} (see the regret table)"
            elif not math.isfinite(hi):
                reasons.append(f"{where} the regret has no interval (too few values around the base optimum)")
                next_step = f"test more {line.hp} values around 2^{keep:.2f} there and run the sweep again"
            else:
                reasons.append(
                    f"{where} keeping it costs {e:.2f}% [{lo:.2f}, {hi:.2f}], which spans {tol:g}%"
                )
                next_step = _seeds_to_decide(line, e, lo, hi, tol)
    optima = np.array([o[0] for o in line.optima()])
    ok = np.isfinite(optima)
    at_base = math.nan
    if ok.sum() >= 2:
        slope, intercept = np.polyfit(line.t[ok], optima[ok], 1)
        at_base = float(intercept + slope * line.t[line.base])
    span = line.doublings
    pick = regrets[worst] if worst is not None else (math.nan,) * 4
    d = regrets[deepest] if len(regrets) > 1 else (math.nan,) * 4
    return {
        "parameterization": line.parameterization,
        "hp": line.hp,
        "axis": line.axis,
        "fixed_axis": line.fixed_axis,
        "fixed_value": line.fixed_value,
        "verdict": verdict,
        "regret_tolerance": tol,
        "worst_regret": pick[0],
        "worst_regret_low": pick[1],
        "worst_regret_high": pick[2],
        "worst_at": int(line.values[worst]) if worst is not None else None,
        "deepest_regret": d[0],
        "deepest_regret_low": d[1],
        "deepest_regret_high": d[2],
        "slope": b,
        "slope_low": low,
        "slope_high": high,
        "shift_octaves": b * span,
        "shift_low": low * span,
        "shift_high": high * span,
        "n_shapes": len(line.values),
        "n_seeds": _seeds(line),
        "reason": "; ".join(reasons),
        "next_step": next_step,
        "base_axis_value": int(line.values[line.base]),
        "line_at_base": at_base,
        "base_optimum": keep,
    }


def transfer_table(lines: list[Line], tol: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    rows = [transfer_row(line, tol) for line in lines if len(line.values) >= 2]
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def payoff_row(line: Line) -> dict[str, Any]:
    slope, low, high = line.payoff()
    levels = line.levels()
    level = float(np.nanmean(levels)) if np.isfinite(levels).any() else math.nan
    # Rounding noise of a loss that does not move with depth is no payoff: below 1e-9 of the loss, 0.
    slope, low, high = (0.0 if abs(v) < 1e-9 * abs(level) else v for v in (slope, low, high))
    flat = line.settings.payoff_flat * level
    if len(line.values) < 3 or not math.isfinite(low):
        verdict = INCONCLUSIVE
        reason = (
            f"only {len(line.values)} depths (need 3)"
            if len(line.values) < 3
            else "one seed per point: no interval (set seed = [0, 1, 2] in [grid])"
        )
    else:
        verdict = sign_verdict(low, high, flat, ("helps", "hurts", "flat"))
        interval = f"{slope:+.4f} [{low:+.4f}, {high:+.4f}] nats per doubling"
        reason = {
            "helps": f"loss falls {interval}",
            "hurts": f"loss rises {interval}",
            "flat": f"{interval}, includes 0 and within ±{flat:.3f}",
        }.get(verdict, f"{interval} spans 0 and more than ±{flat:.3f}")
    base = line.base_optimum()
    regrets = np.array([r[0] for r in line.regret()], dtype=float)
    transferred = levels * (1 + regrets / 100)
    ok = np.isfinite(transferred)
    ok_levels = np.isfinite(levels)
    return {
        "parameterization": line.parameterization,
        "hp": line.hp,
        "fixed_value": line.fixed_value,
        "base_value": 2.0**base if math.isfinite(base) else math.nan,
        "slope": slope,
        "slope_low": low,
        "slope_high": high,
        "percent_per_doubling": 100 * slope / level if level else math.nan,
        "slope_transferred": float(np.polyfit(line.t[ok], transferred[ok], 1)[0])
        if ok.sum() >= 2
        else math.nan,
        "n_shapes": len(line.values),
        "verdict": verdict,
        "reason": reason,
        "base_axis_value": int(line.values[line.base]),
        "level_at_base": float(
            np.polyval(np.polyfit(line.t[ok_levels], levels[ok_levels], 1), line.t[line.base])
        )
        if ok_levels.sum() >= 2
        else math.nan,
    }


def payoff_table(lines: list[Line]) -> pd.DataFrame:
    rows = [payoff_row(line) for line in lines if line.axis == "depth" and len(line.values) >= 2]
    return pd.DataFrame(rows, columns=PAYOFF_COLUMNS)
