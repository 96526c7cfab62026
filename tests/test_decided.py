"""``[search] method = "decided"`` at the plan level (no Ray): lines stop when their verdicts are
decided, seeds go only where one is open, and a killed driver resumes with no trial run twice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from completep_sweep.search import make_plan
from completep_sweep.search.decide import FIRST_LOOK, DecidedPlan, more_seeds
from completep_sweep.sweep import SpecError, parse_sweep
from completep_sweep.synthetic import WALL, basin, spread

DECIDED = """name = "dec"
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
width = [32]
depth = [2, 4, 8, 16]
lr = { log2_range = [-9, -3], step = 2 }
seed = [0, 1]
[train]
steps = 300
[search]
method = "decided"
max_extend = 2
max_seeds = 6
"""


class World:
    """µP's optimum falls half an octave per doubling of depth and its deeper models are worse;
    CompleteP's stays and its deeper models are better (the paper's picture), with the measured
    basin and seed noise. Each loss is a function of the trial alone, whatever order they run in."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def loss(self, config) -> float:
        doublings = math.log2(config.depth / 2)
        mup = config.parameterization == "mup"
        d = math.log2(config.lr) - (-6.0 - (0.5 if mup else 0.0) * doublings)
        if d > WALL[1]:
            return math.inf
        draw = np.random.default_rng([self.seed, int(mup), config.depth, config.seed, round(1000 * (d + 50))])
        best = 2.4 + (0.03 if mup else -0.03) * doublings
        return float(best + basin(d) + spread(d) * draw.standard_normal())


def drive(plan, world: World, until: int | None = None) -> dict[str, float]:
    """Run a plan as the runner does (two trials in flight), stopping after ``until`` results."""
    done, live = {}, []
    while not plan.finished and (until is None or len(done) < until):
        while len(live) < 2 and (config := plan.take()) is not None:
            live.append(config)
        config = live.pop(0)
        value = world.loss(config)
        plan.record(config, "ok" if math.isfinite(value) else "diverged", value)
        done[config.trial_id] = value
    return done


@pytest.mark.full_bootstrap  # the verdicts the stop waits for are the calibrated ones
def test_a_line_stops_once_decided_and_seeds_go_only_where_a_verdict_is_open():
    sweep = parse_sweep(DECIDED.replace("max_seeds = 6", "max_seeds = 12"))
    plan = DecidedPlan(sweep, {})
    done = drive(plan, World())
    stops = plan.stops()
    assert plan.finished and set(done) == {c.trial_id for c in plan.planned()}
    assert stops[("mup", 32)].startswith("decided (transfer re-tune"), stops
    per_line = {line: sum(len(plan.groups[k].measured) for k in keys) for line, keys in plan.lines().items()}
    seeds = {line: plan.groups[keys[0]].rules.seeds or 2 for line, keys in plan.lines().items()}
    if stops[("completep", 32)].startswith("decided"):
        assert per_line[("completep", 32)] > 0
    else:  # still open: it took more seeds than the decided line, up to max_seeds
        assert stops[("completep", 32)].startswith("max seeds") and seeds[("completep", 32)] == 12
        assert per_line[("completep", 32)] > per_line[("mup", 32)]
    assert max(seeds.values()) <= 12 and all(len(g.measured) <= 80 for g in plan.groups.values())


def test_deeper_depths_start_at_the_base_optimum_and_follow_a_moving_one():
    plan = DecidedPlan(parse_sweep(DECIDED), {}, judge=lambda rows, hp: dict(transfer="keep", payoff="flat"))
    order = []
    while (config := plan.take()) is not None:  # one trial at a time: the order the plan asks for
        order.append(config)
        value = World().loss(config)
        plan.record(config, "ok" if math.isfinite(value) else "diverged", value)
    for p in ("mup", "completep"):
        mine = [c for c in order if c.parameterization == p]
        first_deep = next(i for i, c in enumerate(mine) if c.depth > 2)
        assert all(c.depth == 2 for c in mine[:first_deep])  # the base depth's search comes first
        by_x = {}
        for c in mine[:first_deep]:
            by_x.setdefault(math.log2(c.lr), []).append(World().loss(c))
        b = min(by_x, key=lambda x: sum(by_x[x]) / len(by_x[x]))  # its best seed mean then
        for depth in (4, 8, 16):
            start = [math.log2(c.lr) for c in mine if c.depth == depth][:6]  # 3 points x 2 grid seeds
            assert sorted(set(start)) == [b - 0.5, b, b + 0.5]
            # three points, not the file's whole grid: a depth whose optimum stays costs 3 x seeds
            assert not {-9.0, -3.0} & {x for x, _ in plan.groups[(p, depth, 32)].measured}
    # the judge says "decided" at every look, but no look stops a line before 3 seeds (FIRST_LOOK)
    assert all(why.startswith("decided") for why in plan.stops().values())
    assert {g.rules.seeds for g in plan.groups.values()} == {FIRST_LOOK}
    # µP's optimum falls 1.5 octaves by depth 16: its search walks there from the base optimum
    assert abs(plan.groups[("mup", 16, 32)].best() - (-7.5)) <= 0.5


def test_a_killed_decided_search_resumes_with_no_trial_run_twice():
    sweep = parse_sweep(DECIDED.replace("max_seeds = 6", "max_seeds = 4"))
    everything = drive(DecidedPlan(sweep, {}), World(1))
    partial = drive(DecidedPlan(sweep, {}), World(1), until=len(everything) // 2)  # the driver dies
    resumed = DecidedPlan(sweep, partial)
    assert {c.trial_id for c in resumed.planned()} >= set(partial)  # every finished trial is reused
    more = drive(resumed, World(1))
    assert set(more).isdisjoint(partial) and set(more) | set(partial) == set(everything)
    again = DecidedPlan(sweep, everything)
    assert again.finished and again.stops() == resumed.stops()  # a third run finds nothing to do


def test_a_budget_stops_a_line_that_stays_open():
    sweep = parse_sweep(DECIDED + "budget = 60\n")
    plan = DecidedPlan(sweep, {}, judge=lambda rows, hp: {"transfer": "inconclusive", "payoff": "flat"})
    drive(plan, World(2))
    for line, keys in plan.lines().items():
        assert plan.stops()[line].startswith("budget spent"), plan.stops()
        assert sum(len(plan.groups[k].measured) for k in keys) <= 60


def test_make_plan_builds_it_and_bounds_hold():
    sweep = parse_sweep(DECIDED)
    plan = make_plan(sweep, __import__("pandas").DataFrame(columns=["trial_id", "status"]), None)
    assert isinstance(plan, DecidedPlan)
    low, high = plan.bounds()
    assert 0 < low <= high
    assert [more_seeds(n, 12) for n in (2, 3, 4, 6, 9, 12)] == [3, 4, 6, 9, 12, 12]


@pytest.mark.parametrize(
    "change, message",
    [
        (("depth = [2, 4, 8, 16]", "depth = [2, 8]"), "at least 3 depths"),
        (("max_seeds = 6", "max_seeds = 6\nn_trials = 5"), 'setting of method = "optuna"'),
        (('method = "decided"', 'method = "bracket"'), 'setting of method = "decided"'),
    ],
)
def test_a_decided_sweep_file_is_checked_before_any_compute(change, message):
    with pytest.raises(SpecError, match=message):
        parse_sweep(DECIDED.replace(*change))
