"""The bracket search's rules on synthetic losses with a known optimum (no Ray, no training)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from completep_sweep.search.bracket import BracketRules, Group


def search(opt: float, grid, *, seeds=None, noise=0.0, wall=math.inf, rng_seed=0, **rules):
    """Run the rules to the end on loss(x) = 3 + 0.05 (x - opt)^2 + noise; x > wall diverges."""
    rng = np.random.default_rng(rng_seed)
    group = Group(BracketRules(grid=tuple(grid), base_seeds=(0,), seeds=seeds, **rules))
    rounds = []
    while points := group.next_round():
        rounds.append((group.phase, points))
        for x, seed in points:
            group.measured[(x, seed)] = (
                math.inf if x > wall else 3 + 0.05 * (x - opt) ** 2 + noise * rng.standard_normal()
            )
    return group, rounds


def neighbours(group: Group) -> list[float]:
    xs = sorted(group.means())
    i = xs.index(group.best())
    return [xs[j] for j in (i - 1, i + 1) if 0 <= j < len(xs)]


def test_an_optimum_past_the_grid_edge_is_bracketed_at_the_resolution():
    group, rounds = search(-3.3, [-9, -8, -7, -6])  # the grid's best is its top edge
    phases = [phase for phase, _ in rounds]
    assert phases[0] == "grid" and "extend" in phases and phases[-1] == "refine" and group.phase == "done"
    best = group.best()
    xs = sorted(group.means())
    assert xs[0] < best < xs[-1]  # interior: points measured on both sides
    assert abs(best - -3.3) <= 0.25 + 1e-9
    assert all(abs(n - best) == pytest.approx(0.5) for n in neighbours(group))


def test_extension_stops_at_the_stated_limit():
    group, _ = search(10.0, [-9, -8, -7], max_extend=2)
    assert max(group.means()) == -5 and group.phase == "limit"  # at the edge, and says so


def test_diverged_points_never_win_and_a_wall_pushes_the_search_down():
    # Everything above 2^-8 diverges; the smooth optimum (-6) sits beyond the wall.
    group, _ = search(-6.0, [-9, -7, -5], wall=-8.1)
    assert group.best() <= -8.1 and math.isfinite(group.means()[group.best()])
    assert all(math.isinf(m) for x, m in group.means().items() if x > -8.1)
    everything_diverged, _ = search(-6.0, [-9, -7], wall=-20, max_extend=2)
    assert everything_diverged.best() is None and everything_diverged.phase == "no optimum"


def test_seeds_land_on_the_best_point_and_its_two_neighbours():
    group, rounds = search(-7.3, [-9, -7, -5], seeds=3, noise=0.005)
    assert rounds[-1][0] == "seeds"
    best = group.best()
    for x in [best, *neighbours(group)]:
        assert {s for (px, s) in group.measured if px == x} == {0, 1, 2}
    seeded = {px for (px, s) in group.measured if s > 0}
    assert len(seeded) <= 5 < len(group.means())  # seeds go near the optimum, not everywhere


def test_the_cap_stops_a_runaway_search():
    group, _ = search(-7.3, [-9, -7, -5], seeds=5, max_trials=8)
    assert len(group.measured) == 8 and group.phase == "capped"


def test_rounds_replay_identically_from_the_measurements():
    group, rounds = search(-6.6, [-9, -7, -5], seeds=2, noise=0.01)
    replay = Group(group.rules)
    for _, points in rounds:  # a restarted driver: each round recomputed from what was measured
        assert replay.next_round() == points
        for point in points:
            replay.measured[point] = group.measured[point]
    assert replay.next_round() == [] and replay.best() == group.best()


def test_bracket_costs_less_than_the_dense_grid_and_finds_the_same_optimum():
    dense = np.arange(-12, -2.5, 0.5)
    for opt in (-10.2, -7.3, -4.4):
        group, _ = search(opt, [-11, -9, -7, -5, -3])
        assert abs(group.best() - opt) <= 0.25 + 1e-9
        assert len(group.measured) <= 0.6 * len(dense)
