"""Search methods at the plan level (no Ray): what runs, what is reused, how a restart continues."""

from __future__ import annotations

import math

import pytest

from completep_sweep.search import BracketPlan, GridPlan, finished_rows, make_plan
from completep_sweep.store import ResultStore
from completep_sweep.sweep import SpecError, parse_sweep

BRACKET = """name = "br"
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
depth = [2, 4]
lr = { log2_range = [-10, -6], step = 2 }
[train]
steps = 40
[search]
method = "bracket"
seeds = 2
"""


def loss(config) -> float:
    """A basin in log2(lr) whose optimum moves with depth and parameterization; diverges past 2^-2."""
    x = math.log2(config.lr)
    opt = -5.2 - 0.4 * math.log2(config.depth) + (0.3 if config.parameterization == "mup" else 0)
    return math.inf if x > -2 else 3 + 0.05 * (x - opt) ** 2 + 0.001 * config.seed


def drive(plan, until: int | None = None) -> dict[str, float]:
    """Run a plan the way the runner does (two trials at a time), stopping after ``until`` results."""
    done, live = {}, []
    while not plan.finished and (until is None or len(done) < until):
        while len(live) < 2 and (config := plan.take()) is not None:
            live.append(config)
        config = live.pop(0)
        value = loss(config)
        plan.record(config, "ok" if math.isfinite(value) else "diverged", value)
        done[config.trial_id] = value
    return done


def test_a_bracket_search_finds_each_groups_optimum_at_the_resolution():
    sweep = parse_sweep(BRACKET)
    plan = BracketPlan(sweep, {})
    done = drive(plan)
    assert plan.finished and set(plan.phases().values()) == {"done"} and len(plan.groups) == 4
    for (parameterization, depth), group in zip([(k[0], k[1]) for k in plan.groups], plan.groups.values()):
        true = -5.2 - 0.4 * math.log2(depth) + (0.3 if parameterization == "mup" else 0)
        assert abs(group.best() - true) <= 0.25 + 1e-9  # resolution 0.5: within half a step
    assert set(done) == {c.trial_id for c in plan.planned()}
    low, high = plan.bounds()
    assert low <= len(done) <= high


def test_a_restarted_bracket_search_reuses_every_row_and_plans_the_same_trials():
    sweep = parse_sweep(BRACKET)
    full = BracketPlan(sweep, {})
    everything = drive(full)
    first = BracketPlan(sweep, {})
    partial = drive(first, until=9)  # the driver dies after nine results
    resumed = BracketPlan(sweep, partial)
    reused = {c.trial_id for c in resumed.planned()} & set(partial)
    assert reused == set(partial)  # nothing finished is run again
    more = drive(resumed)
    assert set(more).isdisjoint(partial) and set(more) | set(partial) == set(everything)
    assert BracketPlan(sweep, everything).finished  # a third run finds nothing to do


def test_the_grid_plan_runs_each_pending_point_once():
    sweep = parse_sweep(BRACKET.replace('method = "bracket"\nseeds = 2', 'method = "grid"'))
    done = {sweep.trials[0].trial_id: 3.0}
    plan = GridPlan(sweep, done)
    ran = drive(plan)
    assert set(ran) == sweep.ids - set(done) and plan.bounds() == (len(sweep.ids),) * 2


def test_finished_rows_count_diverged_as_infinite_and_skip_errors(make_result):
    import pandas as pd

    rows = pd.DataFrame(
        [
            make_result(lr=0.01).row(),
            make_result(lr=1.0, status="diverged").row(),
            {**make_result(lr=0.1).row(), "status": "error"},
        ]
    )
    done = finished_rows(rows)
    assert len(done) == 2 and sorted(done.values())[1] == math.inf


@pytest.mark.parametrize(
    "table",
    [
        'method = "bracket"\nhp = "depth"',  # not a swept float HP
        'method = "bracket"\nn_trials = 5',  # a setting of another method
        'method = "optuna"',  # n_trials missing
        'method = "optuna"\nn_trials = 5',  # optuna tunes at one shape, this grid has two depths
        'method = "grid"\nresolution = 0.25',
        'method = "random"',
    ],
)
def test_a_search_table_that_cannot_work_names_the_fix(table):
    with pytest.raises(SpecError, match="search|parameterizations|grid.depth") as info:
        parse_sweep(BRACKET.replace('method = "bracket"\nseeds = 2', table))
    assert "\n" not in str(info.value)


def test_around_centres_a_grid_on_another_sweeps_best_value(tmp_path, make_result, cli):
    results = tmp_path / "results"
    tuned = ResultStore(results / "base-tune")
    text = (
        BRACKET.replace('name = "br"', 'name = "base-tune"')
        .replace("depth = [2, 4]", "depth = [2]")
        .replace('method = "bracket"\nseeds = 2', 'method = "grid"')
    )
    tuned.write_spec(text)
    for config in parse_sweep(text).trials:  # best at 2^-6 (losses rise away from it)
        tuned.write_result(
            make_result(
                **{k: v for k, v in config.to_dict().items() if k != "lr"},
                lr=config.lr,
                final_val_loss=3 + abs(math.log2(config.lr) + 6),
            )
        )
    spec = tmp_path / "transfer.toml"
    spec.write_text(
        BRACKET.replace(
            "lr = { log2_range = [-10, -6], step = 2 }",
            'lr = { around = "base-tune", octaves = 1, step = 0.5 }',
        ).replace('method = "bracket"\nseeds = 2', 'method = "grid"')
    )
    code, out, err = cli("validate", spec, "--results", results)
    assert code == 0 and "lr x5" in out, err
    from completep_sweep.results import best_value_resolver

    sweep = parse_sweep(spec.read_text(), resolve=best_value_resolver(results))
    assert sorted({math.log2(t.lr) for t in sweep.trials}) == [-7, -6.5, -6, -5.5, -5]
    code, _, err = cli("validate", spec, "--results", tmp_path / "elsewhere")
    assert code == 2 and "grid.lr.around" in err and "base-tune" in err and "run it first" in err
    assert err.count("grid.lr") == 1


def test_status_and_report_read_a_bracket_search_from_its_rows(tmp_path, make_result, cli):
    store = ResultStore(tmp_path / "br")
    sweep = parse_sweep(BRACKET)
    store.write_spec(BRACKET)
    plan = make_plan(sweep, store.load(), store.root)
    while (config := plan.take()) is not None or not plan.finished:
        value = loss(config)
        store.write_result(
            make_result(
                **{k: v for k, v in config.to_dict().items() if k != "lr"}, lr=config.lr, final_val_loss=value
            )
        )
        plan.record(config, "ok", value)
    code, out, _ = cli("status", store.root)
    assert code == 0 and f"the bracket search is complete ({len(plan.planned())} trials)" in out
    code, out, _ = cli("report", store.root, "--json", "--no-mlflow")
    import json

    optima = json.loads(out)["optima"]
    assert (
        len(optima) == 4 and not any(o["at_edge"] for o in optima) and {o["n_seeds"] for o in optima} == {2}
    )


OPTUNA = """name = "tpe"
model = "tiny"
parameterizations = ["completep"]
[grid]
lr = { log2_range = [-10, -4] }
[train]
steps = 40
[search]
method = "optuna"
n_trials = 4
"""


def test_reading_an_optuna_plan_never_writes_the_study(tmp_path):
    import hashlib

    sweep = parse_sweep(OPTUNA)
    assert make_plan(sweep, ResultStore(tmp_path).load(), tmp_path, read_only=True).planned() == []
    assert not (tmp_path / "optuna.db").exists()  # reading creates no study
    plan = make_plan(sweep, ResultStore(tmp_path).load(), tmp_path)
    drive(plan, until=2)
    db = tmp_path / "optuna.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    (tmp_path / "optuna.db-journal").unlink(missing_ok=True)
    seen = make_plan(sweep, ResultStore(tmp_path).load(), tmp_path, read_only=True)
    assert {c.trial_id for c in seen.planned()} == {c.trial_id for c in plan.planned()}
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not any(p.name.startswith("optuna.db-") for p in tmp_path.iterdir())  # no journal: nothing written
