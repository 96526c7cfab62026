"""The loss basin in log2(HP), fitted jointly over the shapes of one transfer line.

Model, for trial i at shape k (a depth or a width), x = log2(HP), u = x - mu_k:

    loss = L_k + c_below * u^2  (u < 0)
         = L_k + c_above * u^2  (u >= 0),        mu_k = a + b * t_k

with t_k = log2(depth or width) centred over the shapes. One basin shape for every shape (real
basins are asymmetric: flat below the optimum, steeper above), a loss level per shape, and an
optimum that moves linearly in log2 depth: b is the drift in octaves per doubling. Every trial in
the basin counts, not only the points next to each argmin, and seeds enter as trials.
The fit is Gauss-Newton on all parameters (the model is smooth in mu: both sides meet with zero
slope), started from per-shape grid argmins.

Uncertainty: a wild cluster bootstrap. A seed's deviations are correlated along the HP (it shifts a
stretch of its curve), so the unit of resampling is one seed's curve at one shape: fitted values
plus that cluster's residuals times one random weight (Webb's six-point weights, suited to few
clusters). The design stays as measured; heteroscedasticity (more noise above the optimum) and the
within-seed correlation are kept. Intervals are percentile intervals of the refitted parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WINDOW_OCTAVES = 2.0
"""A trial is in the basin when it finished and lies within this many octaves of its shape's argmin."""
WALL = 0.08
"""...and below the wall: above the argmin, from the first value whose mean loss exceeds the best by
more than this fraction, training is breaking down, which no basin models (stability.py reads it)."""
WEBB = np.array([-math.sqrt(1.5), -1.0, -math.sqrt(0.5), math.sqrt(0.5), 1.0, math.sqrt(1.5)])


@dataclass(frozen=True)
class Trials:
    """The basin trials of one transfer line: flat arrays, one entry per trial."""

    shape: np.ndarray  # index of the shape, 0..K-1
    t: np.ndarray  # centred log2(depth or width) per shape (length K)
    x: np.ndarray  # log2(HP)
    loss: np.ndarray
    cluster: np.ndarray  # index of (shape, seed), 0..C-1
    whiten: np.ndarray | None = None  # W with W·noise ~ iid (block-diagonal by cluster); None: equal weights


@dataclass(frozen=True)
class Fit:
    theta: np.ndarray  # the optimum's parameters: (a, b) for a line, one per shape when free
    mu: np.ndarray  # the optimum of each shape (log2 HP)
    level: np.ndarray  # L_k
    c_below: float
    c_above: float
    rss: float
    curve_level: np.ndarray | None = None  # per (shape, seed) curve

    @property
    def a(self) -> float:
        return float(self.theta[0])

    @property
    def b(self) -> float:
        """Drift in octaves per doubling (a line fit); 0 otherwise."""
        return float(self.theta[1]) if len(self.theta) == 2 and self.mode == "line" else 0.0

    mode: str = "line"

    def predict(self, trials: Trials) -> np.ndarray:
        u = trials.x - self.mu[trials.shape]
        level = self.curve_level[trials.cluster] if self.curve_level is not None else self.level[trials.shape]
        return level + np.where(u < 0, self.c_below, self.c_above) * u**2

    def loss_at(self, x: float | np.ndarray) -> np.ndarray:
        """Each shape's expected loss at log2 HP = x (a scalar, or one value per shape)."""
        u = np.asarray(x, dtype=float) - self.mu
        return self.level + np.where(u < 0, self.c_below, self.c_above) * u**2


MODES = ("line", "free", "flat")
"""How the optimum depends on the shape: linear in t (the drift), one per shape, or the same."""


def _design(mode: str, t: np.ndarray) -> np.ndarray:
    """mu = M @ theta for each mode."""
    if mode == "line":
        return np.column_stack([np.ones_like(t), t])
    if mode == "free":
        return np.eye(len(t))
    return np.ones((len(t), 1))


def select(
    shape: np.ndarray,
    x: np.ndarray,
    seed: np.ndarray,
    loss: np.ndarray,
    t: np.ndarray,
    window: float = WINDOW_OCTAVES,
) -> Trials | None:
    """The basin trials: finished, within ``window`` octaves of their shape's seed-mean argmin."""
    keep = np.isfinite(loss)
    centre, wall = np.full(len(t), np.nan), np.full(len(t), np.inf)
    for k in range(len(t)):
        at = keep & (shape == k)
        if not at.any():
            continue
        xs = np.unique(x[at])
        means = np.array([loss[at & (x == v)].mean() for v in xs])
        best = int(np.argmin(means))
        centre[k] = xs[best]
        above = np.flatnonzero((xs > xs[best]) & (means > means[best] * (1 + WALL)))
        if len(above):
            wall[k] = xs[above[0]]
    keep &= (np.abs(x - centre[shape]) <= window + 1e-9) & (x < wall[shape])
    if keep.sum() < 4:
        return None
    clusters = {c: i for i, c in enumerate(sorted(set(zip(shape[keep].tolist(), seed[keep].tolist()))))}
    cluster = np.array([clusters[c] for c in zip(shape[keep].tolist(), seed[keep].tolist())])
    return Trials(shape[keep], np.asarray(t, float), x[keep], loss[keep], cluster)


def _argmins(tr: Trials) -> np.ndarray:
    centres = np.zeros(len(tr.t))
    for k in range(len(tr.t)):
        at = tr.shape == k
        if at.any():
            xs = np.unique(tr.x[at])
            means = np.array([tr.loss[at & (tr.x == v)].mean() for v in xs])
            centres[k] = xs[np.argmin(means)]
    return centres


def fit(tr: Trials, *, mode: str = "line", start: np.ndarray | None = None, iterations: int = 30) -> Fit:
    """Least-squares fit (generalised when ``tr.whiten`` is set): the optimum as ``mode`` says,
    curvatures shared by every shape, a level per (shape, seed) curve so that what shifts a seed's
    whole curve cancels out of the optimum's position (a shape's level is its curves' mean)."""
    n_shapes = len(tr.t)
    m = _design(mode, tr.t)
    present = np.isin(np.arange(n_shapes), tr.shape)
    if start is None:
        start, *_ = np.linalg.lstsq(m[present], _argmins(tr)[present], rcond=None)
    theta = np.array(start, dtype=float)
    # An optimum is never placed beyond the values its shape tested: where one side of the basin
    # is flat (its curvature near 0) the data cannot say how far out it lies, and a fit (or a
    # bootstrap refit) that wanders there would turn "somewhere above 2^-3" into 2^+5.
    lo = np.array([tr.x[tr.shape == k].min() if (tr.shape == k).any() else -np.inf for k in range(n_shapes)])
    hi = np.array([tr.x[tr.shape == k].max() if (tr.shape == k).any() else np.inf for k in range(n_shapes)])

    def outside(mu: np.ndarray) -> float:
        return float(np.sum(np.maximum(lo - mu, 0.0) + np.maximum(mu - hi, 0.0)))

    n_levels = int(tr.cluster.max()) + 1
    w_ = tr.whiten if tr.whiten is not None else np.eye(len(tr.x))
    y, yw = tr.loss, (tr.whiten @ tr.loss if tr.whiten is not None else tr.loss)
    levels_of = [(tr.cluster == k).astype(float) for k in range(n_levels)]

    def linear(theta: np.ndarray):
        """Given the optima: the best levels and curvatures (curvatures kept >= 0), the whitened
        design, and the residual sum of squares."""
        u = tr.x - (m @ theta)[tr.shape]
        design = np.column_stack(levels_of + [np.where(u < 0, u**2, 0.0), np.where(u >= 0, u**2, 0.0)])
        coef, *_ = np.linalg.lstsq(w_ @ design, yw, rcond=None)
        for j in (n_levels, n_levels + 1):  # a negative curvature is no basin: drop that side
            if coef[j] < 0:
                design[:, j] = 0.0
                coef, *_ = np.linalg.lstsq(w_ @ design, yw, rcond=None)
                coef[j] = 0.0
        return coef, w_ @ design, float(np.sum((w_ @ (y - design @ coef)) ** 2))

    coef, design_w, rss = linear(theta)
    for _ in range(iterations):  # Gauss-Newton on theta, linear part profiled out (variable projection)
        u = tr.x - (m @ theta)[tr.shape]
        c = np.where(u < 0, coef[n_levels], coef[n_levels + 1])
        r = w_ @ (y - (coef[:n_levels][tr.cluster] + c * u**2))
        jac = w_ @ ((-2 * c * u)[:, None] * m[tr.shape])  # d(prediction)/d(theta), whitened
        q, _ = np.linalg.qr(design_w)
        jac = jac - q @ (q.T @ jac)  # Kaufman: only what the linear part cannot absorb
        delta, *_ = np.linalg.lstsq(jac, r, rcond=None)
        delta = np.clip(delta, -1.0, 1.0)
        for shrink in (1.0, 0.5, 0.25, 0.1):
            new_theta = theta + shrink * delta
            if outside(m @ new_theta) > outside(m @ theta) + 1e-9:
                continue  # a step may not carry an optimum (further) beyond its tested values
            new_coef, new_design, new_rss = linear(new_theta)
            if new_rss <= rss:
                break
        else:
            break
        converged = np.max(np.abs(new_theta - theta)) < 1e-7
        theta, coef, design_w, rss = new_theta, new_coef, new_design, new_rss
        if converged:
            break
    shape_of = np.zeros(n_levels, dtype=int)
    shape_of[tr.cluster] = tr.shape
    levels = np.array(
        [coef[:n_levels][shape_of == k].mean() if (shape_of == k).any() else np.nan for k in range(n_shapes)]
    )
    return Fit(
        theta, m @ theta, levels, float(coef[n_levels]), float(coef[n_levels + 1]), rss, coef[:n_levels], mode
    )


def whitened(
    tr: Trials, *, mode: str = "line", rounds: int = 2, start: np.ndarray | None = None
) -> tuple[Trials, Fit]:
    """Generalised least squares: the noise's variance and its correlation along a seed's curve,
    estimated from the residuals, weight the fit.

    Seeds spread more above the optimum than below (three times as much one octave above, here):
    log residual^2 is regressed on u- = min(u, 0) and u+ = min(max(u, 0), 2). A seed's deviations
    at nearby HP values are correlated: exp(-|dx| / l), with l from the residual correlation of
    points half an octave apart on one curve. Each curve is whitened with its covariance's Cholesky
    factor and the fit redone; two rounds suffice.
    """
    est = fit(tr, mode=mode, start=start)
    for _ in range(rounds):
        u = tr.x - est.mu[tr.shape]
        residual = tr.loss - est.predict(tr)
        features = np.column_stack([np.ones_like(u), np.minimum(u, 0), np.clip(u, 0, 2)])
        gamma, *_ = np.linalg.lstsq(features, np.log(residual**2 + 1e-10), rcond=None)
        sd = np.sqrt(np.exp(np.clip(features @ gamma, -40, 40)))
        sd = np.clip(sd, np.median(sd) / 5, np.median(sd) * 5)
        length = _correlation_length(tr, residual / sd)
        w_ = np.zeros((len(u), len(u)))
        for c in np.unique(tr.cluster):
            at = np.flatnonzero(tr.cluster == c)
            cov = np.exp(-np.abs(tr.x[at, None] - tr.x[None, at]) / length) * np.outer(sd[at], sd[at])
            w_[np.ix_(at, at)] = np.linalg.inv(np.linalg.cholesky(cov + 1e-12 * np.eye(len(at))))
        tr = Trials(tr.shape, tr.t, tr.x, tr.loss, tr.cluster, w_)
        est = fit(tr, mode=mode, start=est.theta)
    return tr, est


def _correlation_length(tr: Trials, z: np.ndarray, default: float = 1.4) -> float:
    """Octaves over which a seed's standardized deviations decorrelate (from pairs 0.5 apart)."""
    pairs = [
        (z[i], z[j])
        for c in np.unique(tr.cluster)
        for i in np.flatnonzero(tr.cluster == c)
        for j in np.flatnonzero(tr.cluster == c)
        if abs(tr.x[j] - tr.x[i] - 0.5) < 1e-6
    ]
    if len(pairs) < 8:
        return default
    rho = float(np.corrcoef(np.array(pairs).T)[0, 1])
    return float(np.clip(-0.5 / math.log(min(max(rho, 0.05), 0.95)), 0.2, 5.0))


def bootstrap(tr: Trials, estimate: Fit, *, n: int = 200, seed: int = 0) -> list[Fit]:
    """Refits on wild-cluster resamples: fitted values + each (shape, seed) curve's residuals x w."""
    rng = np.random.default_rng(seed)
    fitted = estimate.predict(tr)
    residual = tr.loss - fitted
    n_clusters = int(tr.cluster.max()) + 1
    fits = []
    for _ in range(n):
        w = rng.choice(WEBB, size=n_clusters)
        resampled = Trials(tr.shape, tr.t, tr.x, fitted + residual * w[tr.cluster], tr.cluster, tr.whiten)
        fits.append(fit(resampled, mode=estimate.mode, start=estimate.theta, iterations=12))
    return fits
