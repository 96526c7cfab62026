"""One shape's measured curve of loss against one HP, and what its own data say: nothing else.

A ``Curve`` holds the tested values (log2, sorted) and the losses of every seed there (inf for a
diverged trial, NaN where a seed was not run). Everything a shape reports comes from its own curve:
- ``means``: the seed-mean loss per tested value (inf if any seed diverged there);
- ``best``: the tested value with the lowest seed mean (the measured optimum);
- ``optimum``: the best tested value refined by the parabola through it and its two neighbours
  (when all three are finite and the parabola is convex), kept within half a grid step of the
  best tested value: a star never leaves the measured minimum of its curve;
- ``loss_at``: the loss at an untested value, read from the local parabola of the three tested
  values around it (never below the curve's lowest mean, never above the highest of the three),
  or between the two tested values around it; NaN outside the tested range (no extrapolation);
- ``mean_sd``: the standard error of each seed mean, from the seed-to-seed spread pooled over the
  curve's tested values in three bands (below, near and above its best: real noise grows above the
  optimum), so that two seeds still give an estimate with many degrees of freedom, and scaled
  by t/z for the degrees of freedom it has (few seeds on few points: a wider interval);
- ``perturbed``: the curve with noise of that size added to each seed mean, for the bootstrap.
No shape's data can move another shape's optimum, and identical rows give identical optima.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .prepare import log2

BAND = 0.75
"""Octaves from the best tested value that count as "near" it when the noise is pooled."""


@dataclass(frozen=True, eq=False)
class Curve:
    x: np.ndarray
    """log2 of the tested values, sorted ascending."""
    y: np.ndarray
    """Losses, shape (len(x), seeds): inf where the trial diverged, NaN where it was not run."""

    @classmethod
    def from_trials(cls, trials: pd.DataFrame, hp: str) -> Curve:
        """From one shape's slice trials (columns ``hp``, ``seed``, ``_value``)."""
        x = log2(trials[hp].to_numpy(float))
        ok = np.isfinite(x)
        table = (
            pd.DataFrame(
                {"x": x[ok], "seed": trials["seed"].to_numpy()[ok], "v": trials["_value"].to_numpy(float)[ok]}
            )
            .groupby(["x", "seed"])["v"]
            .mean()
            .unstack("seed")
            .sort_index()
        )
        return cls(table.index.to_numpy(float), table.to_numpy(float))

    @property
    def means(self) -> np.ndarray:
        return seed_means(self.y)

    @property
    def n_seeds(self) -> int:
        return int(self.y.shape[1]) if self.y.ndim == 2 else 0

    def best(self) -> int | None:
        """Index of the tested value with the lowest finite seed mean (None if none is finite)."""
        return best_index(self.means)

    def optimum(self) -> float:
        return refine(self.x, self.means)

    def _pooled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(seed-to-seed variance, its degrees of freedom, seeds) at each tested value: the variance
        pooled within bands of distance to the best tested value (more than BAND octaves below it,
        within BAND, more than BAND above), each band falling back to the whole curve's pooled
        variance when it has fewer than 3 degrees of freedom."""
        finite = np.where(np.isfinite(self.y), self.y, np.nan)
        n = np.sum(~np.isnan(finite), axis=1)
        centre = np.nansum(finite, axis=1, keepdims=True) / np.maximum(n, 1)[:, None]
        ss = np.nansum((finite - centre) ** 2, axis=1)
        dof = np.maximum(n - 1, 0)
        i = self.best()
        d = self.x - (self.x[i] if i is not None else np.nanmedian(self.x))
        band = np.where(d < -BAND, 0, np.where(d > BAND, 2, 1))
        total_dof = dof.sum()
        var = np.full(len(self.x), ss.sum() / total_dof if total_dof else math.nan)
        used = np.full(len(self.x), total_dof)
        for b in range(3):
            at = band == b
            if dof[at].sum() >= 3:
                var[at] = ss[at].sum() / dof[at].sum()
                used[at] = dof[at].sum()
        return var, used, n

    def mean_sd(self) -> np.ndarray:
        """Standard error of each tested value's seed mean (NaN where nothing finite was measured),
        from the pooled variance (``_pooled``). A variance pooled over few degrees of freedom is
        often an underestimate, and the bootstrap draws normal noise of this size: so each error is
        scaled by t(97.5%, dof) / z(97.5%)."""
        var, used, n = self._pooled()
        return np.array([t_factor(int(k)) for k in used]) * np.sqrt(var / np.maximum(n, 1))

    def noise_dof(self) -> int:
        """Degrees of freedom of the noise estimate at the best tested value (0: none)."""
        i = self.best()
        return int(self._pooled()[1][i]) if i is not None else 0

    def perturbed(self, z: np.ndarray, sd: np.ndarray) -> Curve:
        """The curve whose seed means are moved by ``z`` standard errors (diverged points stay)."""
        means = self.means
        moved = np.where(np.isfinite(means), means + z * np.nan_to_num(sd), means)
        return Curve(self.x, moved[:, None])


T975 = (
    *(12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145),
    *(2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048),
    *(2.045, 2.042),
)
"""Student's t 97.5% quantile for 1 … 30 degrees of freedom (beyond: its expansion in 1/ν)."""


def t_factor(dof: int) -> float:
    """t(97.5%, dof) / z(97.5%): how much wider a 95% interval is when its noise was estimated
    from ``dof`` degrees of freedom (1 with none: nothing to estimate from, nothing to widen)."""
    z = 1.959964
    if dof <= 0:
        return 1.0
    expansion = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    t = T975[dof - 1] if dof <= len(T975) else expansion
    return t / z


def seed_means(y: np.ndarray) -> np.ndarray:
    """Mean over the seeds run at each value; inf where any of them diverged, NaN where none ran."""
    with np.errstate(invalid="ignore"):
        finite = np.where(np.isinf(y), np.nan, y)
        count = np.sum(~np.isnan(y), axis=1)
        mean = np.nansum(finite, axis=1) / np.maximum(np.sum(~np.isnan(finite), axis=1), 1)
    mean = np.where(np.isinf(y).any(axis=1), np.inf, mean)
    return np.where(count > 0, mean, np.nan)


def best_index(means: np.ndarray) -> int | None:
    finite = np.isfinite(means)
    if not finite.any():
        return None
    return int(np.argmin(np.where(finite, means, np.inf)))


def _vertex(x3: np.ndarray, y3: np.ndarray) -> float | None:
    """Vertex of the parabola through three points, or None when it is not convex."""
    (x0, x1, x2), (y0, y1, y2) = x3, y3
    curvature = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    if not curvature > 0:
        return None
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    return float(x1 - 0.5 * num / den) if den else None


def refine(x: np.ndarray, means: np.ndarray) -> float:
    """The best tested value, refined by the local parabola and kept within half a step of it."""
    i = best_index(means)
    if i is None:
        return math.nan
    if 0 < i < len(x) - 1 and np.isfinite(means[i - 1 : i + 2]).all():
        vertex = _vertex(x[i - 1 : i + 2], means[i - 1 : i + 2])
        if vertex is not None:
            low = x[i] - (x[i] - x[i - 1]) / 2
            high = x[i] + (x[i + 1] - x[i]) / 2
            return float(min(max(vertex, low), high))
    return float(x[i])


def loss_at(x: np.ndarray, means: np.ndarray, x0: float) -> float:
    """The curve's loss at ``x0``: measured where tested, else from the local parabola (bounded by
    the measured values around it), else between its two tested neighbours; NaN outside the tested
    range, inf where a neighbour diverged."""
    if not math.isfinite(x0) or len(x) == 0 or x0 < x[0] - 1e-9 or x0 > x[-1] + 1e-9:
        return math.nan
    hit = np.flatnonzero(np.abs(x - x0) < 1e-9)
    if len(hit):
        return float(means[hit[0]])
    j = int(np.searchsorted(x, x0))  # x[j - 1] < x0 < x[j]
    left, right = means[j - 1], means[j]
    if not (np.isfinite(left) and np.isfinite(right)):
        return math.inf if np.isinf([left, right]).any() else math.nan
    floor = float(np.nanmin(np.where(np.isfinite(means), means, np.nan)))
    for k in (j - 1, j):  # the three tested values around x0, centred on its nearer neighbour first
        lo = min(max(k - 1, 0), len(x) - 3)
        if lo < 0 or not np.isfinite(means[lo : lo + 3]).all():
            continue
        x3, y3 = x[lo : lo + 3], means[lo : lo + 3]
        a, b, c = np.polyfit(x3, y3, 2)
        if a > 0:
            value = a * x0**2 + b * x0 + c
            return float(min(max(value, floor), max(left, right)))
    t = (x0 - x[j - 1]) / (x[j] - x[j - 1])
    return float(left + t * (right - left))
