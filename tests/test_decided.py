"""``[search] method = "decided"`` at the plan level (no Ray): lines stop when their verdicts are
decided, seeds go only where one is open, and a killed driver resumes with no trial run twice."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from completep_sweep.search import make_plan
from completep_sweep.search.decide import FIRST_LOOK, DecidedPlan, more_seeds
from completep_sweep.search.looks import looks_of
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


class MovingBase:
    """The base depth's optimum is 2^-4, but seed 0 dips at 2^-5, so its one-seed search ends there
    and the deeper depths start around 2^-5, their own optimum; seeds then move the base's best to
    2^-4, above every value the deeper depths tested. No noise otherwise."""

    def loss(self, config) -> float:
        x = math.log2(config.lr)
        dip = -0.06 if config.depth == 2 and config.seed == 0 and x == -5.0 else 0.0
        return float(2.4 + basin(x - (-4.0 if config.depth == 2 else -5.0)) + dip)


def test_every_depth_measures_the_base_optimum_after_it_moves():
    from completep_sweep.analysis import analyze

    text = DECIDED.replace('["mup", "completep"]', '["completep"]').replace("seed = [0, 1]", "seed = [0]")
    undecided = {"transfer": "inconclusive", "payoff": "inconclusive"}
    plan = DecidedPlan(parse_sweep(text), {}, judge=lambda rows, hp: undecided)
    drive(plan, MovingBase())
    (keys,) = plan.lines().values()
    assert plan.groups[keys[0]].best() == -4.0  # the base's best moved up once seeds were added
    for key in keys:  # every depth measured it and one resolution either side, with every seed
        seeds = Counter(x for x, _ in plan.groups[key].measured)
        assert all(seeds.get(x, 0) == plan.max_seeds for x in (-4.5, -4.0, -3.5)), (key, seeds)
    rows = [
        {**plan._config(k, point).to_dict(), "status": "ok", "final_val_loss": loss}
        for k in keys
        for point, loss in plan.groups[k].measured.items()
    ]
    regrets = analyze(pd.DataFrame(rows)).regret
    assert regrets["regret_percent"].notna().all(), regrets  # readable at every depth (unreadable before)


class Shifted(World):
    """World's CompleteP everywhere, its optimum at ``optimum`` (log2 lr) at every depth."""

    def __init__(self, optimum: float, seed: int = 0):
        super().__init__(seed)
        self.optimum = optimum

    def loss(self, config) -> float:
        d = math.log2(config.lr) - self.optimum
        if d > WALL[1]:
            return math.inf
        draw = np.random.default_rng([self.seed, config.depth, config.seed, round(1000 * (d + 50))])
        return float(2.4 + basin(d) + spread(d) * draw.standard_normal())


@pytest.mark.parametrize("optimum", [-8.14, -7.9, -8.6, -9.1])
def test_values_off_the_powers_of_two_are_reused_not_measured_again_a_rounding_error_away(optimum):
    lrs = ", ".join(repr(0.01 * 2.0**k) for k in range(-7, 0))  # a decimal grid: log2 is never exact
    text = DECIDED.replace("lr = { log2_range = [-9, -3], step = 2 }", f"lr = [{lrs}]")
    for seed in range(3):
        plan = DecidedPlan(parse_sweep(text), {}, judge=lambda rows, hp: {"transfer": "?", "payoff": "?"})
        drive(plan, Shifted(optimum, seed))
        for key, group in plan.groups.items():
            xs = sorted({x for x, _ in group.measured})
            assert min(np.diff(xs)) > 0.1, (key, xs)  # no lr measured twice under two ids


def release(enough: int, calls: list | None = None):
    """A stand-in for one release's analysis: a line is decided once its points have ``enough`` seeds
    (another release reads the same rows with another ``enough``); ``calls`` counts its looks."""

    def judge(rows, hp):
        if calls is not None:
            calls.append(len(rows))
        said = rows["seed"].nunique() >= enough
        return {"transfer": "keep" if said else "inconclusive", "payoff": "flat" if said else "inconclusive"}

    return judge


def test_a_later_release_replays_a_decided_search_as_it_ran(tmp_path):
    sweep = parse_sweep(DECIDED)
    first = DecidedPlan(sweep, {}, judge=release(3), looks=looks_of(tmp_path, read_only=False))
    everything = drive(first, World(3))
    assert all(why.startswith("decided") for why in first.stops().values())
    kept = sorted(p.name for p in (tmp_path / "looks").glob("*.json"))
    assert len(kept) == 2 * len(first.lines())  # per line: at the grid's 2 seeds, then decided at 3
    # a later release reads the same rows differently: without the kept looks it reopens every line
    assert not DecidedPlan(sweep, everything, judge=release(6)).finished
    later = DecidedPlan(sweep, everything, judge=release(6), looks=looks_of(tmp_path, read_only=False))
    assert later.finished and later.stops() == first.stops()
    assert {c.trial_id for c in later.planned()} == set(everything)  # no row left stale, none to run
    # killed halfway, resumed by the later release: the rounds run so far replay, the new looks are its own
    half = tmp_path / "half"
    partial = drive(
        DecidedPlan(sweep, {}, judge=release(3), looks=looks_of(half, read_only=False)), World(3), 60
    )
    resumed = DecidedPlan(sweep, partial, judge=release(6), looks=looks_of(half, read_only=False))
    assert {c.trial_id for c in resumed.planned()} >= set(partial)
    more = drive(resumed, World(3))
    assert set(more).isdisjoint(partial) and len(more) + len(partial) > len(everything)


def test_reading_a_plan_writes_no_look_and_a_damaged_look_is_asked_again(tmp_path, capsys):
    sweep = parse_sweep(DECIDED)
    everything = drive(DecidedPlan(sweep, {}, judge=release(3)), World(3))
    calls = []
    read = DecidedPlan(sweep, everything, judge=release(3, calls), looks=looks_of(tmp_path, read_only=True))
    assert read.finished and len(calls) == 4 and not (tmp_path / "looks").exists()  # status, report
    DecidedPlan(sweep, everything, judge=release(3), looks=looks_of(tmp_path, read_only=False))
    looks = sorted((tmp_path / "looks").glob("*.json"))
    damaged = next(p for p in looks if '"keep"' in p.read_text())  # the look that decided one line
    damaged.write_text('{"digest": "')  # a torn write, or a file edited by hand
    edited = next(p for p in looks if p != damaged and '"keep"' in p.read_text())
    record = json.loads(edited.read_text())
    del record["verdicts"]["payoff"]  # an edit that leaves a verdict out is no verdict either
    edited.write_text(json.dumps(record))
    other = next(
        p for p in looks if p not in (damaged, edited) and '"keep"' not in p.read_text()
    )  # at 2 seeds
    record = json.loads(other.read_text())
    record["verdicts"]["transfer"] = "Keep"  # another release's word, or a typo, is no verdict
    other.write_text(json.dumps(record))
    calls.clear()
    again = DecidedPlan(sweep, everything, judge=release(6, calls), looks=looks_of(tmp_path, read_only=True))
    err = capsys.readouterr().err
    assert len(calls) == 3 and f"look {damaged} does not read" in err, err
    assert (
        f"look {edited} has no valid payoff verdict" in err and f"look {other} has no valid transfer" in err
    )
    assert damaged.read_text() == '{"digest": "'  # a read command repairs nothing
    assert not any(why.startswith("decided") for why in again.stops().values())  # both asked again
    DecidedPlan(sweep, everything, judge=release(3), looks=looks_of(tmp_path, read_only=False))
    assert json.loads(damaged.read_text())["verdicts"]["payoff"] == "flat"  # run writes them anew
    assert json.loads(edited.read_text())["verdicts"]["payoff"] == "flat"
    assert json.loads(other.read_text())["verdicts"]["transfer"] == "inconclusive"


def test_a_look_that_cannot_be_kept_costs_only_its_pin(tmp_path, capsys):
    (tmp_path / "looks").write_text("a file where the folder goes")  # every write fails (as on a full disk)
    plan = DecidedPlan(parse_sweep(DECIDED), {}, judge=release(3), looks=looks_of(tmp_path, read_only=False))
    drive(plan, World(3))
    err = capsys.readouterr().err
    assert plan.finished and err.count("was not kept") == 1, err


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
        (("max_seeds = 6", "max_seeds = 6\nmax_depth = 24"), "search.max_depth: 24 adds no depth"),
        (("max_seeds = 6", "max_seeds = 6\nmax_depth = 48"), "48 is not a doubling .* stop at 32"),
        (("max_seeds = 6", "max_seeds = 6\nmax_depth = 1024"), "6 doublings .* set it to 256 or less"),
        (("max_seeds = 6", "max_seeds = 6\nmax_depth = true"), "search.max_depth: .*valid integer"),
        (('method = "decided"', 'method = "bracket"\nmax_depth = 64'), 'setting of method = "decided"'),
    ],
)
def test_a_decided_sweep_file_is_checked_before_any_compute(change, message):
    with pytest.raises(SpecError, match=message):
        parse_sweep(DECIDED.replace(*change))


def deepening_judge(wanted_below: int, transfer: str = "inconclusive"):
    """A judge whose regret at the deepest depth is near the tolerance until ``wanted_below``, where the
    transfer verdict becomes decided (keep)."""

    def judge(rows, hp):
        deepest = int(rows["depth"].max())
        near = deepest < wanted_below
        return dict(transfer=transfer if near else "keep", payoff="flat", deeper="wanted" if near else "")

    return judge


def test_a_regret_near_the_tolerance_adds_the_next_doubling_up_to_max_depth():
    sweep = parse_sweep(DECIDED + "max_depth = 64\n")
    plan = DecidedPlan(sweep, {}, judge=deepening_judge(wanted_below=1000))
    done = drive(plan, World(3))
    assert set(done) == {c.trial_id for c in plan.planned()}  # the added depths are planned trials
    for p in ("mup", "completep"):
        depths = sorted({c.depth for c in plan.planned() if c.parameterization == p})
        assert depths == [2, 4, 8, 16, 32, 64]  # doublings of the deepest, not past max_depth
        assert plan.added[(p, 32)] == [32, 64] and "added depth 32, 64" in plan.stops()[(p, 32)]
        base = plan.groups[(p, 2, 32)]
        for depth in (32, 64):  # each starts like the grid's deeper depths: around the base optimum
            group = plan.groups[(p, depth, 32)]
            low, b, high = group.rules.grid
            assert (low, high) == (b - 0.5, b + 0.5) and abs(b - base.best()) <= 0.5 and b in base.means()
            assert {low, b, high} <= {x for x, s in group.measured if s in (0, 1)}
            assert group.rules.limits == plan.groups[(p, 4, 32)].rules.limits  # the file's reach
            # added at a look, it gets the seeds the line had then: at least FIRST_LOOK per read point
            assert min(sum(1 for x2, _ in group.measured if x2 == x) for x in (low, b, high)) >= FIRST_LOOK


def test_no_depth_is_added_without_max_depth_or_once_keeping_the_optimum_is_firmly_wrong():
    plain = DecidedPlan(parse_sweep(DECIDED), {}, judge=deepening_judge(wanted_below=1000))
    drive(plain, World(3))
    assert max(c.depth for c in plain.planned()) == 16 and not plain.added
    retune = DecidedPlan(
        parse_sweep(DECIDED + "max_depth = 64\n"), {}, judge=deepening_judge(1000, transfer="re-tune")
    )
    drive(retune, World(3))
    assert max(c.depth for c in retune.planned()) == 16 and not retune.added
    once = DecidedPlan(parse_sweep(DECIDED + "max_depth = 64\n"), {}, judge=deepening_judge(wanted_below=32))
    drive(once, World(3))  # decided at depth 32: 64 is never run
    assert max(c.depth for c in once.planned()) == 32
    assert all(why.startswith("decided") for why in once.stops().values()), once.stops()


def test_a_killed_search_that_added_depths_resumes_with_no_trial_run_twice():
    sweep = parse_sweep(DECIDED.replace("max_seeds = 6", "max_seeds = 4") + "max_depth = 64\n")
    judge = deepening_judge(wanted_below=64)
    plan = DecidedPlan(sweep, {}, judge=judge)
    everything = drive(plan, World(4))
    assert max(c.depth for c in plan.planned()) == 64
    depth_of = {c.trial_id: c.depth for c in plan.planned()}
    first_added = next(i for i, t in enumerate(everything) if depth_of[t] == 32)
    # the driver dies after depth 32 was added and partly run
    partial = drive(DecidedPlan(sweep, {}, judge=judge), World(4), until=first_added + 3)
    assert any(depth_of[t] == 32 for t in partial) and not any(depth_of[t] == 64 for t in partial)
    resumed = DecidedPlan(sweep, partial, judge=judge)
    more = drive(resumed, World(4))
    assert set(more).isdisjoint(partial) and set(more) | set(partial) == set(everything)
    assert max(c.depth for c in resumed.planned()) == 64


@pytest.mark.parametrize("budget, added", [(45, []), (400, [32, 64])])
def test_a_budget_adds_only_the_depths_it_can_pay_for(budget, added):
    sweep = parse_sweep(DECIDED + f"budget = {budget}\nmax_depth = 64\n")
    plan = DecidedPlan(sweep, {}, judge=deepening_judge(wanted_below=1000))
    drive(plan, World(2))
    for line, keys in plan.lines().items():
        assert plan.added.get(line, []) == added, plan.stops()
        assert sum(len(plan.groups[k].measured) for k in keys) <= budget
        assert plan.stops()[line].startswith("budget spent" if not added else ("budget spent", "max seeds"))


@pytest.mark.full_bootstrap  # the flag reads the calibrated intervals
def test_the_analysis_wants_a_deeper_depth_only_where_the_optimum_drifts():
    from completep_sweep.search.decide import verdicts_of
    from completep_sweep.synthetic import Family, simulate_study

    family = Family(design="half-octave", seeds=6)
    stays = [verdicts_of(simulate_study(rng_seed=s, family=family, optimum=-5.0)[0], "lr") for s in range(4)]
    assert all(said["deeper"] == "" for said in stays)  # a regret that size is seed noise here
    drifts = [
        verdicts_of(simulate_study(drift=-0.6, rng_seed=s, family=family, optimum=-5.0)[0], "lr")
        for s in range(4)
    ]
    assert any(said["deeper"] == "wanted" for said in drifts)
    # the dense grid finds every edge, so none is only a lower bound: each reads as a verdict
    assert {said["stability"] for said in stays + drifts} <= {"falls", "rises", "stays", "inconclusive"}


def test_a_max_depth_the_model_refuses_is_found_before_any_compute(monkeypatch):
    from completep_sweep.trial import ConfigError, TrialConfig

    real = TrialConfig.replace

    def replace(self, **changes):  # a model that fits at most 32 layers
        if changes.get("depth", 0) > 32:
            raise ConfigError("depth", "at most 32 layers fit this model")
        return real(self, **changes)

    monkeypatch.setattr(TrialConfig, "replace", replace)
    with pytest.raises(
        SpecError, match=r"search.max_depth: depth 64 is invalid .*at most 32.*lower it to 32"
    ):
        parse_sweep(DECIDED + "max_depth = 64\n")
    assert parse_sweep(DECIDED + "max_depth = 32\n").spec.search.max_depth == 32


def test_the_memory_estimate_counts_the_deepest_depth_max_depth_may_add():
    from completep_sweep.memory import largest_trial

    assert largest_trial(parse_sweep(DECIDED)).depth == 16
    assert largest_trial(parse_sweep(DECIDED + "max_depth = 64\n")).depth == 64
    assert (
        largest_trial(parse_sweep(DECIDED.replace("[2, 4, 8, 16]", "[3, 6, 12]") + "max_depth = 48\n")).depth
        == 48
    )


@pytest.mark.parametrize(
    "probe, says, added",
    [
        ("stability = true\n", "inconclusive", [32]),  # another depth narrows the edge's slope
        ("stability = true\n", "probe higher", []),  # an edge bounded from below: a depth won't help
        ("stability = true\n", "no edge", []),  # a depth where everything diverged: nor here
        ("", "inconclusive", []),  # not probed, not asked
    ],
)
def test_an_open_stability_verdict_adds_a_depth_only_where_a_depth_settles_it(probe, says, added):
    def judge(rows, hp):
        deep = rows["depth"].max() >= 32
        return dict(transfer="keep", payoff="flat", deeper="", stability="stays" if deep else says)

    plan = DecidedPlan(parse_sweep(DECIDED + probe + "max_depth = 64\n"), {}, judge=judge)
    drive(plan, World(5))
    assert [plan.added.get(line, []) for line in plan.lines()] == [added, added]
    for why in plan.stops().values():
        assert why.startswith("decided (transfer keep, payoff flat")
        assert ("stability" in why) == bool(probe), why


@pytest.mark.slow
def test_a_decided_run_and_status_say_why_each_line_stopped(tmp_path):
    """End to end through Ray: a user trainer whose optimum drifts (tests/user_trainers.py:drifting)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    shutil.copy(Path(__file__).with_name("user_trainers.py"), tmp_path / "cps_dec_trainers.py")
    spec = tmp_path / "dec.toml"
    spec.write_text(
        'name = "dec"\nmodel = "tiny"\nparameterizations = ["mup"]\ntrainer = "cps_dec_trainers:drifting"\n'
        "[grid]\nwidth = [32]\ndepth = [2, 4, 8]\nlr = { log2_range = [-9, -5], step = 2 }\nseed = [0]\n"
        '[train]\nsteps = 10\n[search]\nmethod = "decided"\nresolution = 0.5\nmax_seeds = 4\n'
    )
    cli = [sys.executable, "-m", "completep_sweep.cli"]
    results = tmp_path / "results"

    def call(*args):
        done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    ran = call("run", str(spec), "--results", str(results), "--no-mlflow")
    assert re.search(r"^  mup 32: decided \(transfer re-tune, payoff helps\)$", ran, re.M), ran
    looks = {p.name: p.stat().st_mtime_ns for p in (results / "dec" / "looks").glob("*.json")}
    assert looks  # what each look said, kept for a later release's replay
    status = call("status", "dec", "--results", str(results))
    assert "  mup 32: decided (transfer re-tune, payoff helps)" in status, status
    again = call("run", str(spec), "--results", str(results), "--no-mlflow")
    assert re.search(r" 0 ran .* already done", again), again  # nothing run twice
    assert {p.name: p.stat().st_mtime_ns for p in (results / "dec" / "looks").glob("*.json")} == looks
