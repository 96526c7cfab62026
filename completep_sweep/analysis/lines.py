"""Transfer lines: the shapes of one parameterization along depth (or width), each read on its own.

A line holds, per shape, its measured ``Curve`` of loss against one swept HP (the other swept HPs
at that shape's best combination). Every number is read from the curves themselves, and its 95%
interval from one bootstrap: each shape's seed means are moved by draws of their own noise (the
seed-to-seed spread pooled over that shape's curve, ``Curve.mean_sd``; with two seeds a resampling
of seeds would see almost none of it), and each number is recomputed from the moved curves; each
redrawn optimum is also moved by a uniform draw within ±``SETTINGS.grid_error`` grid steps (what
the grid itself hides from a noise bootstrap). The percentile interval is widened about the
estimate by the factor ``SETTINGS.kappa_*`` that benchmarks/calibration.py derives (the noise is
correlated along a seed's curve and not Gaussian); the payoff's, a slope of minima, is centred on
the estimate with the bootstrap's width (``widen_centred``).
- per shape: the optimum (``curve.refine``) and the regret of keeping the base shape's optimum:
  how much more loss the shape's curve has there than at its own best, in percent of that best;
- along the line: the drift of the optima (octaves per doubling), and the depth payoff (the slope
  of each shape's best loss against log2 depth, nats per doubling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .curve import Curve, loss_at
from .prepare import Prepared, hp_slice, mode

Z95 = 1.959964


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The analysis' constants, named once. The kappas are derived by benchmarks/calibration.py,
    which prints the coverage they give on every simulated family."""

    n_bootstrap: int = 200
    """Seed-bootstrap draws per line."""
    bootstrap_seed: int = 0
    """Fixed, so the same rows always give the same intervals."""
    grid_error: float = 0.5
    """Grid steps: a refined optimum's error that the grid hides from a noise bootstrap (between two
    tested values the local parabola misreads an asymmetric basin, by more on whole-octave grids).
    Each bootstrap draw moves each shape's optimum by a uniform draw of ± this many local grid
    steps, so the drift's interval carries it; without it the drift covered 87% on whole octaves."""
    kappa_optimum: float = 0.95
    """Widening of a shape's optimum interval (bootstrap percentiles about the estimate); the
    interval is never narrower than the grid resolves (``_resolution``)."""
    kappa_regret: float = 1.0
    """Widening of the regret interval."""
    kappa_drift: float = 0.8
    """Widening of the drift interval."""
    kappa_payoff: float = 1.05
    """Widening of the depth-payoff interval."""
    regret_tolerance: float = 1.0
    """Percent of loss that keeping the base optimum may cost at any tested depth ("keep")."""
    payoff_flat: float = 0.01
    """Fraction of the loss per doubling within which a payoff that includes 0 reads "flat"."""
    stability_band: float = 0.5
    """Octaves per doubling within which a stable edge whose slope includes 0 "stays"."""
    stopping_widening: float = 1.3
    """A search that stops when decided (``method = "decided"``) looks at the verdicts once per
    round; stopping at the first firm look would make wrong firm verdicts more frequent than one
    look at 95% does. Each look widens the regret, drift and payoff intervals by this factor
    instead (about 99% each: 5 looks share the 5%, Bonferroni); benchmarks/decision_cost.py
    measures the wrong-verdict rate it gives."""

    def for_stopping(self) -> Settings:
        """These settings with the intervals a stop-when-decided look uses."""
        w = self.stopping_widening
        return replace(
            self,
            kappa_regret=w * self.kappa_regret,
            kappa_drift=w * self.kappa_drift,
            kappa_payoff=w * self.kappa_payoff,
        )


SETTINGS = Settings()
N_BOOTSTRAP = SETTINGS.n_bootstrap
BOOTSTRAP_SEED = SETTINGS.bootstrap_seed


def widen(estimate: float, boots: np.ndarray, kappa: float) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of ``boots``, their distances to ``estimate`` times ``kappa``."""
    boots = boots[np.isfinite(boots)]
    if len(boots) < 10 or not math.isfinite(estimate):
        return math.nan, math.nan
    q_lo, q_hi = np.percentile(boots, [2.5, 97.5])
    return estimate - kappa * max(estimate - q_lo, 0.0), estimate + kappa * max(q_hi - estimate, 0.0)


def widen_centred(estimate: float, boots: np.ndarray, kappa: float) -> tuple[float, float]:
    """``estimate`` ± ``kappa`` times half the width between the 2.5 and 97.5 percentiles of
    ``boots``. For a statistic of minima (each depth's best loss), the bootstrap's own minima are
    biased by how many tested values tie near each best, differently at each depth: its draws can
    all lie on one side of the estimate, which would put the estimate on an end of its own
    interval. Its spread is what it measures well."""
    boots = boots[np.isfinite(boots)]
    if len(boots) < 10 or not math.isfinite(estimate):
        return math.nan, math.nan
    q_lo, q_hi = np.percentile(boots, [2.5, 97.5])
    half = kappa * (q_hi - q_lo) / 2
    return estimate - half, estimate + half


def sign_verdict(low: float, high: float, band: float, names: tuple[str, str, str]) -> str:
    """(below 0, above 0, within ±band) named by ``names`` from a 95% interval, else 'inconclusive'.
    Exclusive by construction: an interval that excludes 0 is below or above; "within" is only said
    of one that includes 0."""
    below, above, within = names
    if high < 0:
        return below
    if low > 0:
        return above
    if -band <= low and high <= band:
        return within
    return "inconclusive"


def _resolution(curve: Curve) -> tuple[float, float]:
    """Half a grid step beyond the tested values the noise cannot tell from the best (log2)."""
    i = curve.best()
    if i is None:
        return math.nan, math.nan
    x, means, sd = curve.x, curve.means, curve.mean_sd()
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.nan_to_num(sd) ** 2 + np.nan_to_num(sd[i]) ** 2)
        tied = np.isfinite(means) & (means - means[i] <= Z95 * se)
    tied[i] = True
    lo, hi = np.flatnonzero(tied)[[0, -1]]
    left = x[lo] - (x[lo] - x[lo - 1]) / 2 if lo > 0 else x[lo]
    right = x[hi] + (x[hi + 1] - x[hi]) / 2 if hi < len(x) - 1 else x[hi]
    return float(left), float(right)


def _local_step(curve: Curve) -> float:
    """The grid step around the curve's best tested value (mean of the gaps to its neighbours)."""
    i = curve.best()
    if i is None or len(curve.x) < 2:
        return 0.0
    gaps = np.diff(curve.x)[max(i - 1, 0) : i + 1]
    return float(gaps.mean())


def _at_index(curves: list[Curve], index: list[int | None]) -> np.ndarray:
    """Each curve's seed mean at its given tested value (NaN where none, or not finite)."""
    out = [c.means[i] if i is not None else math.nan for c, i in zip(curves, index)]
    return np.where(np.isfinite(out), out, np.nan)


def _slope(t: np.ndarray, v: np.ndarray) -> float:
    ok = np.isfinite(v)
    if ok.sum() < 2 or np.ptp(t[ok]) == 0:
        return math.nan
    return float(np.polyfit(t[ok], v[ok], 1)[0])


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
    curves: list[Curve] = field(default_factory=list)
    boots: list[list[Curve]] = field(default_factory=list)
    """Per bootstrap draw: every shape's redrawn curve."""
    grid_errors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """Per bootstrap draw and shape: the grid error added to the redrawn optimum (log2)."""
    settings: Settings = SETTINGS

    @property
    def t(self) -> np.ndarray:
        """Centred log2 of the axis values: the drift's unit is octaves per doubling."""
        lg = np.log2(self.values.astype(float))
        return lg - lg.mean()

    @property
    def doublings(self) -> float:
        return float(np.ptp(np.log2(self.values.astype(float))))

    # ---------------------------------------------------------------- per shape

    def _optima(self, curves: list[Curve]) -> np.ndarray:
        return np.array([c.optimum() for c in curves])

    def _boot_optima(self) -> np.ndarray:
        """(draws, shapes): each draw's optima, each moved by its grid error."""
        if not self.boots:
            return np.zeros((0, len(self.curves)))
        moved = np.array([self._optima(b) for b in self.boots]) + self.grid_errors
        low = [c.x[0] if len(c.x) else np.nan for c in self.curves]
        high = [c.x[-1] if len(c.x) else np.nan for c in self.curves]
        return np.clip(moved, low, high)  # the grid's error lies between tested values, not past them

    def optima(self) -> list[tuple[float, float, float]]:
        """Per shape: optimum (log2 HP) and its 95% interval. The interval is never narrower than the
        grid can resolve: half a step beyond every tested value whose seed mean is within the noise
        of the best one (a difference under Z95 of its standard error), the best included."""
        est = self._optima(self.curves)
        boots = self._boot_optima()
        out = []
        for k, curve in enumerate(self.curves):
            low, high = widen(est[k], boots[:, k], self.settings.kappa_optimum)
            left, right = _resolution(curve)
            if math.isfinite(left):
                low = left if not math.isfinite(low) else min(low, left)
                high = right if not math.isfinite(high) else max(high, right)
            out.append((float(est[k]), low, high))
        return out

    def base_optimum(self) -> float:
        """log2 of the base shape's optimum: the value one would keep."""
        return float(self.curves[self.base].optimum()) if self.curves else math.nan

    def _regrets(self, curves: list[Curve]) -> np.ndarray:
        keep = curves[self.base].optimum()
        out = []
        for c in curves:
            means = c.means
            best = (
                np.nanmin(np.where(np.isfinite(means), means, np.nan))
                if np.isfinite(means).any()
                else math.nan
            )
            at = loss_at(c.x, means, keep)
            out.append(100.0 * (at - best) / best if math.isfinite(best) and best > 0 else math.nan)
        regrets = np.array(out, dtype=float)
        regrets[self.base] = 0.0  # where it was tuned, keeping it is no regret
        return np.where(np.isnan(regrets), np.nan, np.maximum(regrets, 0.0))

    def regret(self) -> list[tuple[float, float, float, float]]:
        """Per shape: (percent more loss at the base optimum than at the shape's best, its 95%
        interval, the regret measured at the tested value nearest the base optimum). inf where
        the base optimum diverged there, NaN where it lies outside the values tested there."""
        if not self.curves:
            return []
        est = self._regrets(self.curves)
        boots = np.array([self._regrets(b) for b in self.boots]) if self.boots else np.zeros((0, len(est)))
        keep = self.base_optimum()
        out = []
        for k, curve in enumerate(self.curves):
            if math.isinf(est[k]):
                low = high = math.inf
            else:
                low, high = widen(est[k], boots[:, k], self.settings.kappa_regret)
                low = max(0.0, low) if math.isfinite(low) else low
            measured = math.nan
            if len(curve.x) and math.isfinite(keep):
                j = int(np.argmin(np.abs(curve.x - keep)))
                means = curve.means
                finite = means[np.isfinite(means)]
                if finite.size and abs(curve.x[j] - keep) <= 0.5 + 1e-9:
                    measured = 100.0 * (means[j] - finite.min()) / finite.min()
            out.append((float(est[k]), low, high, measured))
        return out

    # ---------------------------------------------------------------- along the line

    def drift(self) -> tuple[float, float, float]:
        """Octaves of optimum per doubling (least squares of the shapes' optima), 95% interval."""
        if len(self.values) < 2 or not self.curves:
            return math.nan, math.nan, math.nan
        est = _slope(self.t, self._optima(self.curves))
        boots = np.array([_slope(self.t, o) for o in self._boot_optima()])
        return (est, *widen(est, boots, self.settings.kappa_drift))

    def _levels(self, curves: list[Curve]) -> np.ndarray:
        out = []
        for c in curves:
            means = c.means
            out.append(float(np.min(means[np.isfinite(means)])) if np.isfinite(means).any() else math.nan)
        return np.array(out)

    def levels(self) -> np.ndarray:
        """Each shape's best seed-mean loss (at its own best tested value)."""
        return self._levels(self.curves)

    def payoff(self) -> tuple[float, float, float]:
        """Slope of each shape's best loss against log2(axis), nats per doubling, 95% interval: the
        wider of two centred bootstraps, the best loss redrawn as the minimum over tested values and
        as the mean at the best one alone. The draws move each value on its own, but one seed's noise
        is correlated along the axis (as its data order is), so near-tied values move together and
        their minimum varies more than the first assumes (docs/verdicts.md, step 6)."""
        if len(self.values) < 2 or not self.curves:
            return math.nan, math.nan, math.nan
        est = _slope(self.t, self.levels())
        at = [c.best() for c in self.curves]
        kappa = self.settings.kappa_payoff
        low, high = widen_centred(est, np.array([_slope(self.t, self._levels(b)) for b in self.boots]), kappa)
        alone = np.array([_slope(self.t, _at_index(b, at)) for b in self.boots])
        low_alone, high_alone = widen_centred(est, alone, kappa)
        return est, float(np.fmin(low, low_alone)), float(np.fmax(high, high_alone))


def build_lines(
    prep: Prepared,
    hp: str,
    *,
    n_boot: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    settings: Settings = SETTINGS,
) -> list[Line]:
    """Every line of ``hp``: along depth at each width (one depth makes a line of one shape, so
    every shape gets an optimum), and along width at each depth with two or more widths."""
    groups: dict[tuple, list[int]] = {}
    for p, width, depth in prep.keys():
        groups.setdefault(("depth", p, width), []).append(depth)
        groups.setdefault(("width", p, depth), []).append(width)
    return [
        _line(prep, p, hp, axis, fixed, sorted(values), n_boot, seed, settings)
        for (axis, p, fixed), values in sorted(groups.items())
        if axis == "depth" or len(values) >= 2
    ]


def _line(prep, p, hp, axis, fixed, values, n_boot, seed, settings) -> Line:
    other = "width" if axis == "depth" else "depth"
    frames = []
    for v in values:
        key = (p, fixed, v) if axis == "depth" else (p, v, fixed)
        _, trials, _ = hp_slice(prep, key, hp)
        frames.append(trials.assign(_shape=values.index(v)))
    trials = pd.concat(frames, ignore_index=True)
    declared = mode(trials.get(f"base_{axis}"))
    base = values.index(declared) if declared in values else 0
    line = Line(p, hp, axis, other, fixed, np.array(values), base, trials, settings=settings)
    line.curves = [Curve.from_trials(trials[trials["_shape"].eq(k)], hp) for k in range(len(values))]
    seeds = max(c.n_seeds for c in line.curves)
    if seeds >= 2 and n_boot > 0:
        # Each shape's own noise, its own random stream (seeded by its place in the line): identical
        # rows get identical intervals, and one shape's noise never widens another's.
        sds = [c.mean_sd() for c in line.curves]
        streams = [np.random.default_rng([seed, k]) for k in range(len(line.curves))]
        draws = [
            [rng.standard_normal(len(c.x)) for rng, c in zip(streams, line.curves)] for _ in range(n_boot)
        ]
        line.boots = [[c.perturbed(z, sd) for c, z, sd in zip(line.curves, zs, sds)] for zs in draws]
        steps = [_local_step(c) for c in line.curves]
        line.grid_errors = settings.grid_error * np.column_stack(
            [np.random.default_rng([seed, k, 1]).uniform(-h, h, n_boot) for k, h in enumerate(steps)]
        )
    return line
