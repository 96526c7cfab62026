"""Transfer lines: the shapes of one parameterization along depth (or width), fitted as one basin.

A line holds the trials of one swept HP at each of its shapes (the other swept HPs at each shape's
best combination) and two fits of basin.py with their bootstrap refits:
- ``free``: an optimum per shape. Gives each shape's optimum, the depth payoff (each shape's loss
  at the base shape's optimum) and the regret of not re-tuning.
- ``line``: an optimum linear in log2(depth or width). Gives the drift, in octaves per doubling.

Intervals are bootstrap standard errors widened by a factor (KAPPA_*) and read as normal: the
factors are what makes simulated 95% intervals cover the truth 95% of the time under noise shaped
like this machine's trials (benchmarks/calibration.py prints the coverage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import basin
from .prepare import Prepared, hp_slice, log2, mode

Z95 = 1.959964
# Widening of bootstrap standard errors for 95% intervals, from benchmarks/calibration.py.
KAPPA_DRIFT = 1.4
KAPPA_OPTIMUM = 2.0
KAPPA_LOSS = 1.5
KAPPA_PAYOFF = 1.6  # on the Student t interval of the levels' slope
_T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
)


def t975(dof: int) -> float:
    """Student t 0.975 quantile (beyond the table, a close expansion)."""
    return _T975[dof - 1] if 1 <= dof <= len(_T975) else Z95 + 2.4 / max(dof, 1)


def sign_verdict(low: float, high: float, band: float, names: tuple[str, str, str]) -> str:
    """(below 0, above 0, within ±band) named by ``names`` from a 95% interval, else 'inconclusive'."""
    below, above, within = names
    if high < 0:
        return below
    if low > 0:
        return above
    if -band <= low and high <= band:
        return within
    return "inconclusive"


N_BOOTSTRAP = 200
BOOTSTRAP_SEED = 0  # fixed so that the same trials always give the same intervals


@dataclass
class Line:
    parameterization: str
    hp: str
    axis: str  # depth or width
    fixed_axis: str
    fixed_value: int
    values: np.ndarray  # the axis values of the shapes, sorted
    base: int  # index of the base shape (the declared base if run, else the smallest)
    trials: pd.DataFrame  # the hp slice's trials at every shape (column _value: inf if diverged)
    basin_trials: basin.Trials | None = None
    free: basin.Fit | None = None
    free_boot: list[basin.Fit] = field(default_factory=list)
    line: basin.Fit | None = None
    line_boot: list[basin.Fit] = field(default_factory=list)

    @property
    def t(self) -> np.ndarray:
        """Centred log2 of the axis values: the drift's unit is octaves per doubling."""
        lg = np.log2(self.values.astype(float))
        return lg - lg.mean()

    @property
    def doublings(self) -> float:
        return float(np.ptp(np.log2(self.values.astype(float))))

    def interval(self, estimate: float, boots: np.ndarray, kappa: float) -> tuple[float, float]:
        boots = boots[np.isfinite(boots)]
        if len(boots) < 10 or not math.isfinite(estimate):
            return math.nan, math.nan
        half = Z95 * kappa * float(np.std(boots))
        return estimate - half, estimate + half

    # ---------------------------------------------------------------- what the fits say

    def drift(self) -> tuple[float, float, float]:
        """Octaves per doubling, with its 95% interval (NaN without a line fit)."""
        if self.line is None:
            return math.nan, math.nan, math.nan
        b = self.line.b
        return (b, *self.interval(b, np.array([f.b for f in self.line_boot]), KAPPA_DRIFT))

    def lack_of_fit(self) -> tuple[float, int]:
        """(chi-square, degrees of freedom) of the shapes' own optima about the fitted line, each
        weighed by its calibrated error: large when the optimum does not move linearly in log2
        (depth), and then the line's drift says little."""
        if self.line is None or self.free is None or not self.free_boot:
            return math.nan, 0
        boots = np.array([f.mu for f in self.free_boot])
        se = KAPPA_OPTIMUM * np.std(boots, axis=0)
        ok = se > 0
        chi2 = float(np.sum(((self.free.mu - self.line.mu)[ok] / se[ok]) ** 2))
        return chi2, int(ok.sum()) - 2

    def optima(self) -> list[tuple[float, float, float]]:
        """Per shape: optimum (log2 HP) and its 95% interval, from the free fit."""
        if self.free is None:
            return [(math.nan,) * 3 for _ in self.values]
        boots = (
            np.array([f.mu for f in self.free_boot]) if self.free_boot else np.zeros((0, len(self.values)))
        )
        return [
            (float(self.free.mu[k]), *self.interval(float(self.free.mu[k]), boots[:, k], KAPPA_OPTIMUM))
            for k in range(len(self.values))
        ]

    def _at_base(self, fit: basin.Fit) -> np.ndarray:
        return fit.loss_at(fit.mu[self.base])

    @property
    def pooled(self) -> tuple[basin.Fit | None, list[basin.Fit]]:
        """The fit to read losses at the base optimum from: the line (the base's optimum pooled
        over every shape) when there is one, else the free fit."""
        return (self.line, self.line_boot) if self.line is not None else (self.free, self.free_boot)

    def base_optimum(self) -> float:
        """log2 of the base shape's optimum, the value one would transfer."""
        fit, _ = self.pooled
        return float(fit.mu[self.base]) if fit is not None else math.nan

    def payoff(self, transferred: bool = False) -> tuple[float, float, float]:
        """Slope of each shape's best loss (its level, at its own optimum) against log2(axis), nats
        per doubling, with a 95% interval; ``transferred``: of its loss at the base optimum instead
        (the best loss plus the regret; no interval).

        A seed shifts its whole curve, so the level's uncertainty is the spread of the seeds' curve
        levels: pooled over the shapes, and a Student t interval with the pooled degrees of freedom.
        """
        fit = self.pooled[0] if transferred else self.free
        if fit is None or len(self.values) < 2:
            return math.nan, math.nan, math.nan
        if transferred:
            return float(np.polyfit(self.t, self._at_base(fit), 1)[0]), math.nan, math.nan
        est = float(np.polyfit(self.t, fit.level, 1)[0])
        tr = self.basin_trials
        shape_of = np.zeros(len(fit.curve_level), dtype=int)
        shape_of[tr.cluster] = tr.shape
        residual = fit.curve_level - fit.level[shape_of]
        n = np.bincount(shape_of, minlength=len(self.values))
        dof = int(np.sum(np.maximum(n - 1, 0)))
        if dof < 1:
            return est, math.nan, math.nan
        sd = math.sqrt(float(np.sum(residual**2)) / dof)
        sxx = float(np.sum((self.t - self.t.mean()) ** 2))
        se = sd * math.sqrt(float(np.sum((self.t - self.t.mean()) ** 2 / np.maximum(n, 1)))) / sxx
        half = KAPPA_PAYOFF * t975(dof) * se
        return est, est - half, est + half

    def regret(self) -> list[tuple[float, float, float]]:
        """Per shape: percent more loss at the base shape's optimum than at its own, with interval."""
        fit, fits = self.pooled
        if fit is None:
            return [(math.nan,) * 3 for _ in self.values]

        def percent(f):
            return 100.0 * (self._at_base(f) - f.level) / f.level

        est = percent(fit)
        boots = np.array([percent(f) for f in fits])
        out = []
        for k in range(len(self.values)):
            low, high = (
                self.interval(float(est[k]), boots[:, k], KAPPA_LOSS) if len(boots) else (math.nan,) * 2
            )
            out.append((float(est[k]), max(0.0, low) if math.isfinite(low) else low, high))
        return out


def build_lines(
    prep: Prepared, hp: str, *, n_boot: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> list[Line]:
    """Every line of ``hp``: along depth at each width (one depth makes a line of one shape, so
    every shape gets an optimum), and along width at each depth with two or more widths."""
    groups: dict[tuple, list[int]] = {}
    for p, width, depth in prep.keys():
        groups.setdefault(("depth", p, width), []).append(depth)
        groups.setdefault(("width", p, depth), []).append(width)
    return [
        _line(prep, p, hp, axis, "width" if axis == "depth" else "depth", fixed, sorted(values), n_boot, seed)
        for (axis, p, fixed), values in sorted(groups.items())
        if axis == "depth" or len(values) >= 2
    ]


def _line(prep, p, hp, axis, other, fixed, values, n_boot, seed) -> Line:
    frames = []
    for v in values:
        key = (p, fixed, v) if axis == "depth" else (p, v, fixed)
        _, trials, _ = hp_slice(prep, key, hp)
        frames.append(trials.assign(_shape=values.index(v)))
    trials = pd.concat(frames, ignore_index=True)
    declared = mode(trials.get(f"base_{axis}"))
    base = values.index(declared) if declared in values else 0
    line = Line(p, hp, axis, other, fixed, np.array(values), base, trials)
    x = log2(trials[hp].to_numpy(float))
    ok = np.isfinite(x)
    tr = basin.select(
        trials["_shape"].to_numpy()[ok],
        x[ok],
        trials["seed"].to_numpy()[ok],
        trials["_value"].to_numpy(float)[ok],
        line.t,
    )
    if tr is None or len(np.unique(tr.x)) < 3:
        return line
    line.basin_trials = tr
    present = np.isin(np.arange(len(values)), tr.shape)
    if present.all():
        wtr, line.free = basin.whitened(tr, mode="free")
        line.free_boot = basin.bootstrap(wtr, line.free, n=n_boot, seed=seed)
    if present.all() and len(values) >= 3:
        # Start from the free optima's own line: a flat basin with a wall above has a second, worse
        # minimum (the optimum at the wall) that a start from the argmins can fall into.
        start = np.polyfit(line.t, line.free.mu, 1)[::-1] if line.free is not None else None
        wtr, line.line = basin.whitened(tr, mode="line", start=start)
        line.line_boot = basin.bootstrap(wtr, line.line, n=n_boot, seed=seed + 1)
    return line
