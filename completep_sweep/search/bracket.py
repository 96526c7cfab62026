"""Bracket search along one HP in log2 space: the rules, as a pure function of what has been measured.

Per group (a shape, a parameterization and one value of every other swept HP) the search starts
from the sweep file's grid values of ``hp`` and, round by round:
  1. runs any grid point not yet measured (with the grid's seeds);
  2. while the best point is on an edge of what was measured, extends one grid step beyond it
     (at most ``max_extend`` octaves past the grid; if every point diverged, it goes lower);
  3. refines: a point halfway between the best and each neighbour further than ``resolution``
     octaves away, until the neighbours are at ``resolution``; the same around every point within
     ``near`` (1%) of the best loss, since one seed's noise can hide the true best;
  4. with ``seeds = N``, runs seeds up to N at the best point and its two neighbours (and again if
     the seed means move the best elsewhere).
A point's loss is the mean over its seeds; a diverged seed makes it infinite, so a diverged point
never wins. The next round is a function of the measurements only, so a restarted driver that
reads the finished rows back replays the same rounds and continues where the last one stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..outcome import STABLE_WITHIN
from ..sweepfile import Search

EPS = 1e-9


def _setting(name: str):
    """The default of a ``[search]`` key: declared once, on sweepfile.Search."""
    return Search.model_fields[name].default


@dataclass(frozen=True, kw_only=True)
class BracketRules:
    """The knobs of ``[search] method = "bracket"``: the sweep file's (sweepfile.Search, whose
    defaults these are) plus the grid they start from."""

    grid: tuple[float, ...]
    """log2 of the sweep file's values of the searched HP (sorted)."""
    base_seeds: tuple[int, ...]
    """The grid's seeds: every point is measured with these."""
    resolution: float = _setting("resolution")
    """Octaves between the best point and its neighbours when the search ends."""
    max_extend: float = _setting("max_extend")
    """Octaves the search may go beyond the grid's lowest and highest values."""
    seeds: int | None = _setting("seeds")
    """Seeds at the best point and its two neighbours at the end (None: the grid's seeds only)."""
    max_trials: int = _setting("max_trials_per_shape")
    """At most this many trials per group, whatever the rules want."""
    stability: bool = _setting("stability")
    """Then find the largest stable value above the best to ``resolution`` (stable: every seed
    finished within ``blowup`` of the best mean), for the stability question."""
    near: float = 0.01
    """Points whose loss is within this fraction of the best one's are refined around too: with one
    seed a point can look worse than it is by about the seed-to-seed spread (1% ≈ 0.025 nats)."""
    blowup: float = STABLE_WITHIN
    """Stable means within this fraction of the best mean: the analysis' stability rule (outcome.py)."""
    limits: tuple[float, float] | None = None
    """The lowest and highest x the search may reach; None: the grid's ends ± ``max_extend`` (a
    search that starts from a few points inside the sweep file's grid keeps the file's reach)."""

    @classmethod
    def of(cls, search: Search, *, grid: tuple[float, ...], base_seeds: tuple[int, ...]) -> BracketRules:
        """The rules a sweep file's ``[search]`` table sets."""
        return cls(
            grid=grid,
            base_seeds=base_seeds,
            resolution=search.resolution,
            max_extend=search.max_extend,
            seeds=search.seeds,
            max_trials=search.max_trials_per_shape,
            stability=search.stability,
        )

    @property
    def step(self) -> float:
        """The grid's spacing in octaves: how far one extension reaches."""
        gaps = [b - a for a, b in zip(self.grid, self.grid[1:])]
        return min(gaps) if gaps else 1.0

    @property
    def ends(self) -> tuple[float, float]:
        """(lowest, highest) x the search may measure: ``limits``, else the grid's ends ± max_extend."""
        if self.limits is not None:
            return self.limits
        return self.grid[0] - self.max_extend, self.grid[-1] + self.max_extend

    @property
    def reach(self) -> tuple[float, float]:
        """``ends`` with a rounding allowance: the test a proposed x must pass."""
        lo, hi = self.ends
        return lo - EPS, hi + EPS

    @property
    def all_seeds(self) -> tuple[int, ...]:
        """The grid's seeds, then the next unused integers, up to ``seeds``."""
        want = max(self.seeds or 0, len(self.base_seeds))
        extra = (s for s in range(max(self.base_seeds, default=-1) + 1, 10**9) if s not in self.base_seeds)
        return self.base_seeds + tuple(next(extra) for _ in range(want - len(self.base_seeds)))

    def bounds(self) -> tuple[int, int]:
        """(fewest, most) trials one group can take."""
        n = len(self.grid) * len(self.base_seeds)
        return min(n, self.max_trials), self.max_trials


Point = tuple[float, int]  # (log2 of the HP value, seed)


@dataclass
class Group:
    """What one group has measured: (x, seed) -> loss (inf diverged, None errored, absent pending)."""

    rules: BracketRules
    measured: dict[Point, float | None] = field(default_factory=dict)
    also: tuple[float, ...] = ()
    """More points (x) that get the seeds of step 4 besides the best and its neighbours, measured
    there if not yet (within reach): where another question is read (the decided search's base
    optimum at this depth)."""
    phase: str = "grid"
    """What the last round was for (grid, extend, refine, seeds, stability), or why the search ended: done;
    limit (the best point is still on an edge, max_extend octaves past the grid); capped
    (max_trials); no optimum (every point diverged down to the limit)."""

    def means(self) -> dict[float, float]:
        """Seed mean per measured x (inf if any seed diverged); points with only errors are left out."""
        by_x: dict[float, list[float]] = {}
        for (x, _), loss in sorted(self.measured.items()):  # sums in a fixed order: a replay agrees
            if loss is not None:
                by_x.setdefault(x, []).append(loss)
        return {
            x: math.inf if any(math.isinf(v) for v in vs) else sum(vs) / len(vs)
            for x, vs in sorted(by_x.items())
        }

    def best(self) -> float | None:
        """x of the lowest seed mean (ties: the lower x); None when nothing finite was measured."""
        finite = {x: m for x, m in self.means().items() if math.isfinite(m)}
        return min(finite, key=lambda x: (finite[x], x)) if finite else None

    def next_round(self) -> list[Point]:
        """The points to measure next (empty: the search is over for this group)."""
        proposals, self.phase = self._rules()
        room = self.rules.max_trials - len(self.measured)
        if len(proposals) > room:
            proposals, self.phase = proposals[: max(room, 0)], "capped"
        if not proposals and self.phase not in ("capped", "no optimum", "limit"):
            self.phase = "done"
        return proposals

    def _new(self, xs, seeds) -> list[Point]:
        return [(x, s) for x in xs for s in seeds if (x, s) not in self.measured]

    def _rules(self) -> tuple[list[Point], str]:
        r = self.rules
        grid = self._new(r.grid, r.base_seeds)
        if grid:
            return grid, "grid"
        means = self.means()
        xs = list(means)
        lo, hi = r.reach
        best = self.best()
        if best is None:  # everything diverged (or errored): the optimum lies lower
            below = min(xs, default=r.grid[0]) - r.step
            return (self._new([below], r.base_seeds), "extend") if below >= lo else ([], "no optimum")
        i = xs.index(best)
        at_edge = i in (0, len(xs) - 1)
        if i == len(xs) - 1 and best + r.step <= hi:
            return self._new([best + r.step], r.base_seeds), "extend"
        if i == 0 and best - r.step >= lo:
            return self._new([best - r.step], r.base_seeds), "extend"
        threshold = means[best] + r.near * abs(means[best])
        contenders = [k for k, x in enumerate(xs) if means[x] <= threshold]
        halves = sorted(
            {
                (xs[k] + xs[j]) / 2
                for k in contenders
                for j in (k - 1, k + 1)
                if 0 <= j < len(xs) and abs(xs[j] - xs[k]) > r.resolution + EPS
            }
        )
        if halves:
            return self._new(halves, r.base_seeds), "refine"
        if r.seeds:
            around = [xs[j] for j in (i - 1, i, i + 1) if 0 <= j < len(xs)]
            around += [x for x in self.also if lo <= x <= hi and x not in around]
            seeded = self._new(around, r.all_seeds[: r.seeds])
            if seeded:
                return seeded, "seeds"
        if r.stability:
            probe = self._stability_probe(xs, means, i, hi)
            if probe:
                return self._new(probe, r.base_seeds), "stability"
        return [], "limit" if at_edge else "done"

    def _stability_probe(self, xs: list[float], means: dict[float, float], i: int, hi: float) -> list[float]:
        """Above the best: extend while still stable, then halve the gap to the first unstable value."""
        r = self.rules
        threshold = means[xs[i]] * (1 + r.blowup)
        j = i
        while j + 1 < len(xs) and means[xs[j + 1]] <= threshold:
            j += 1
        if j + 1 == len(xs):
            return [xs[j] + r.step] if xs[j] + r.step <= hi else []
        gap = xs[j + 1] - xs[j]
        return [(xs[j] + xs[j + 1]) / 2] if gap > r.resolution + EPS else []
