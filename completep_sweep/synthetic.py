"""Synthetic trials shaped like real ones on this machine: for benchmarks and calibration.

Measured here (tiny preset, width 32 / base 16, 300 steps of 16 x 64 tokens, depths 2-16, µP and
CompleteP, learning rates 2^-10 … 2^-3 in half octaves, 3 seeds: 360 trials), with d the distance
in octaves from a shape's optimum:
- the basin is asymmetric: about +0.03 nats one octave below the optimum and +0.06 to +0.08 one
  octave above, +0.10 three octaves below and +0.15 two above;
- the seed-to-seed spread grows above the optimum: 0.01 nats two to three octaves below, 0.03 at
  the optimum, 0.06 half an octave above, 0.1 one to two octaves above;
- a seed's deviations are correlated along the learning rate (0.7 between neighbours half an
  octave apart): a seed shifts a stretch of its curve together rather than each point apart;
- within two octaves above the optimum no trial diverged at this budget; further above, a wall
  is assumed (divergence becomes likely, then certain), as in longer runs.
``SyntheticShape`` draws losses for any (log2 lr, seed) lazily, each new draw conditioned on the
earlier ones of the same seed, so an adaptive search and a dense grid can read the same noisy world.

The calibration does not let the analysis check itself against the world it assumes: a ``Family``
varies what the analysis never models (FAMILIES): the basin's kind (steep above or below the
optimum, symmetric, flat-bottomed), the noise (the measured Gaussian, heavy-tailed, or with loss
spikes above the optimum), a seed's level shift and tilt along its whole curve, seeds that diverge
where others do not, the design (the bracket search, whole- or half-octave dense grids) and 2-5 seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# (d in octaves, seed-to-seed sd in nats): pooled over the 8 measured shapes.
SPREAD = (
    (-3.0, 0.011),
    (-2.0, 0.012),
    (-1.0, 0.02),
    (-0.5, 0.03),
    (0.0, 0.033),
    (0.5, 0.056),
    (1.0, 0.09),
    (2.0, 0.10),
)
CORRELATION_LENGTH = 1.4  # octaves: exp(-0.5 / 1.4) = 0.7 between points half an octave apart
WALL = (2.5, 4.0)  # octaves above the optimum where divergence starts being possible, and is certain


def basin(d: np.ndarray | float, kind: str = "steep-above") -> np.ndarray:
    """Expected excess loss (nats) at d octaves from the optimum, smooth at 0. ``steep-above`` is the
    kind measured here (flat below, steeper above); the others are what the calibration also draws."""
    d = np.asarray(d, dtype=float)
    if kind == "steep-below":
        d = -d
    elif kind == "symmetric":
        return 0.05 * d**2
    elif kind == "flat-bottom":  # within half an octave the loss barely moves, then a steep rise
        return 0.012 * d**4 + 0.002 * d**2
    below = 0.05 * (np.sqrt(1 + (d / 1.0) ** 2) - 1) * 1.0 + 0.002 * d**2
    above = 0.12 * (np.sqrt(1 + (d / 0.8) ** 2) - 1) * 0.8 + 0.004 * d**2
    return np.where(d < 0, below, above)


@dataclass(frozen=True, kw_only=True)
class Family:
    """One kind of simulated world (the calibration draws many, not the one it assumes)."""

    name: str = "measured"
    basin: str = "steep-above"
    """steep-above (measured here), steep-below, symmetric or flat-bottom (see ``basin``)."""
    noise: str = "gaussian"
    """gaussian (measured), heavy (Student t with 3 dof, same scale) or spiky (a loss spike of
    0.05-0.2 nats at 15% of the points more than half an octave above the optimum)."""
    seed_shift: float = 0.0
    """Standard deviation (nats) of a level shift that moves a seed's whole curve."""
    seed_tilt: float = 0.0
    """Standard deviation (nats per octave) of a tilt of a seed's whole curve."""
    seed_diverge: float = 0.0
    """Probability that a trial more than 1.5 octaves above the optimum diverges for one seed."""
    design: str = "bracket"
    """bracket (the demo's search), octave (2^-11 … 2^-1) or half-octave (2^-10 … 2^-2) dense grids,
    or close: the half-octave value nearest each depth's optimum and its two neighbours only (where
    a converged search spends its seeds; their noise moves together, ``CORRELATION_LENGTH``)."""
    seeds: int = 3


FAMILIES = (
    Family(),
    Family(name="steep below, 2 seeds, octaves", basin="steep-below", design="octave", seeds=2),
    Family(
        name="symmetric, heavy tails, half-octaves", basin="symmetric", noise="heavy", design="half-octave"
    ),
    Family(name="flat bottom, spikes, bracket", basin="flat-bottom", noise="spiky", seeds=3),
    Family(
        name="seed shifts and tilts, 2 seeds, octaves",
        seed_shift=0.02,
        seed_tilt=0.01,
        design="octave",
        seeds=2,
    ),
    Family(name="diverging seeds, 5 seeds, half-octaves", seed_diverge=0.3, design="half-octave", seeds=5),
    Family(
        name="spiky, steep below, 2 seeds, half-octaves",
        basin="steep-below",
        noise="spiky",
        design="half-octave",
        seeds=2,
    ),
    Family(name="close values, 12 seeds", design="close", seeds=12),
)


def spread(d: np.ndarray | float) -> np.ndarray:
    """Seed-to-seed standard deviation of the final loss at d octaves from the optimum."""
    xs, ys = zip(*SPREAD)
    return np.interp(d, xs, ys)


def diverge_probability(d: float) -> float:
    low, high = WALL
    return float(np.clip((d - low) / (high - low), 0.0, 1.0))


@dataclass
class SyntheticShape:
    """One shape: its optimum (log2 lr), the loss there, and a seeded noisy world to sample."""

    optimum: float
    best_loss: float = 2.4
    noise: float = 1.0
    """Scales every spread (0: noise-free)."""
    family: Family = Family()
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    _z: dict[int, dict[float, float]] = field(default_factory=dict)  # seed -> x -> standard normal
    _diverged: dict[tuple[float, int], bool] = field(default_factory=dict)
    _seed_offsets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def _standard_normal(self, x: float, seed: int) -> float:
        """A draw of the seed's correlated process at x, given its earlier draws."""
        drawn = self._z.setdefault(seed, {})
        if x in drawn:
            return drawn[x]
        xs = np.array(list(drawn))
        if len(xs):
            k = np.exp(-np.abs(xs[:, None] - xs[None, :]) / CORRELATION_LENGTH)
            c = np.exp(-np.abs(xs - x) / CORRELATION_LENGTH)
            w = np.linalg.solve(k + 1e-9 * np.eye(len(xs)), c)
            mean, var = float(w @ np.array(list(drawn.values()))), max(1e-12, 1.0 - float(w @ c))
        else:
            mean, var = 0.0, 1.0
        drawn[x] = mean + math.sqrt(var) * float(self.rng.standard_normal())
        return drawn[x]

    def loss(self, x: float, seed: int) -> float:
        """Final validation loss of the trial at lr = 2^x with this seed (inf when it diverged)."""
        d = x - self.optimum
        f = self.family
        key = (x, seed)
        if key not in self._diverged:
            p = diverge_probability(d)
            if d > 1.5:
                p = max(p, f.seed_diverge)
            self._diverged[key] = bool(self.rng.random() < p)
        if self._diverged[key]:
            return math.inf
        z = self._standard_normal(x, seed)
        if f.noise == "heavy":  # Student t (3 dof) with the Gaussian's scale: rare large deviations
            z *= math.sqrt(1.0 / max(self.rng.chisquare(3) / 3.0, 1e-3)) / math.sqrt(3.0)
        extra = 0.0
        if f.noise == "spiky" and d > 0.5 and self.rng.random() < 0.15:
            extra = float(self.rng.uniform(0.05, 0.2))
        if f.seed_shift or f.seed_tilt:
            shift, tilt = self._seed_offsets.setdefault(
                seed, (float(self.rng.normal(0, f.seed_shift)), float(self.rng.normal(0, f.seed_tilt)))
            )
            extra += shift + tilt * d
        return float(self.best_loss + basin(d, f.basin) + self.noise * spread(d) * z + extra)

    def expected(self, x: float) -> float:
        """The noise-free loss at 2^x (what a method's chosen optimum is worth)."""
        return float(self.best_loss + basin(x - self.optimum, self.family.basin))


DESIGNS = {"octave": (-11.0, -1.0, 1.0), "half-octave": (-10.0, -2.0, 0.5)}  # dense grids: (low, high, step)


def close_values(optimum: float) -> tuple[float, float, float]:
    """The design "close": the half-octave value nearest ``optimum`` (log2 lr) and one either side."""
    centre = round(optimum * 2) / 2
    return centre - 0.5, centre, centre + 0.5


def simulate_study(
    *,
    drift: float = 0.0,
    payoff: float = 0.0,
    depths=(2, 4, 8, 16),
    seeds=None,
    start=(-9.0, -7.0, -5.0, -3.0),
    optimum: float | None = None,
    rng_seed: int = 0,
    parameterization: str = "completep",
    width: int = 32,
    base_width: int = 16,
    family: Family = Family(),
):
    """One simulated transfer study as trial rows (the columns ``analyze`` reads).

    Per depth d the optimum is ``optimum + drift * log2(d / depths[0])`` (octaves) and the best loss
    ``2.4 + payoff * log2(d / depths[0])`` (nats). Each depth is measured by the family's design: the
    bracket rules of the demo (the grid ``start`` with every seed, refined to half an octave,
    stability probed), a dense grid with every seed everywhere, or three close values
    with every seed (``Family.design``). Returns (rows, base optimum).
    """
    import pandas as pd

    from .search.bracket import BracketRules, Group

    rng = np.random.default_rng(rng_seed)
    optimum = rng.uniform(-6.0, -4.5) if optimum is None else optimum
    seeds = tuple(range(family.seeds)) if seeds is None else tuple(seeds)
    rules = BracketRules(grid=tuple(start), base_seeds=seeds, resolution=0.5, max_extend=2.0, stability=True)
    rows = []
    for k, depth in enumerate(depths):
        doublings = math.log2(depth / depths[0])
        shape = SyntheticShape(
            optimum=optimum + drift * doublings,
            best_loss=2.4 + payoff * doublings,
            rng=np.random.default_rng(rng_seed * 1000 + k),
            family=family,
        )
        measured = {}
        if family.design == "close":
            xs = close_values(shape.optimum)
        elif family.design in DESIGNS:
            low, high, step = DESIGNS[family.design]
            xs = [float(x) for x in np.arange(low, high + step / 2, step)]
        if family.design == "close" or family.design in DESIGNS:
            for x in xs:
                for seed in seeds:
                    measured[(x, seed)] = shape.loss(x, seed)
        else:
            group = Group(rules)
            while points := group.next_round():
                for x, seed in points:
                    group.measured[(x, seed)] = shape.loss(x, seed)
            measured = group.measured
        for (x, seed), loss in measured.items():
            shape = dict(parameterization=parameterization, width=width, depth=depth, base_width=base_width)
            row = trial_row(**shape, base_depth=depths[0], x=x, seed=seed, loss=loss)
            rows.append({"trial_id": f"{rng_seed}-{depth}-{x}-{seed}", **row})
    return pd.DataFrame(rows), optimum


def trial_row(
    *,
    parameterization: str,
    width: int,
    depth: int,
    base_width: int,
    base_depth: int,
    x: float,
    seed: int,
    loss: float,
) -> dict:
    """A simulated trial's row: the columns ``analyze`` reads (an infinite loss: diverged)."""
    finite = math.isfinite(loss)
    return {
        "parameterization": parameterization,
        "alpha": 1.0,
        "width": width,
        "depth": depth,
        "base_width": base_width,
        "base_depth": base_depth,
        "lr": 2.0**x,
        "seed": seed,
        "steps": 300,
        "status": "ok" if finite else "diverged",
        "final_val_loss": loss if finite else math.nan,
        "flops": 1e12 * depth,
    }


def shift_learning_rates(rows, drift: float):
    """Real rows with a known drift injected: each depth's learning rates are relabelled by
    ``drift`` octaves per doubling from the base depth (the losses stay as measured). Used by the
    calibration's semi-synthetic studies: the real curves' shapes and noise, a drift of known size."""
    out = rows.copy()
    doublings = np.log2(out["depth"].to_numpy(float) / out["base_depth"].to_numpy(float))
    out["lr"] = out["lr"].to_numpy(float) * np.exp2(drift * doublings)
    return out
