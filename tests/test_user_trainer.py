"""Your trainer in a sweep (user_trainer.py): a function or a command template trains each trial,
checked before any compute, hashed into the ids, its failures error rows. The user's code lives in
tests/user_trainers.py and tests/user_command.py; it computes a loss from a formula, no training."""

from __future__ import annotations

import importlib.metadata
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from completep_sweep.sweep import parse_sweep
from completep_sweep.trial import TrialConfig
from completep_sweep.user_trainer import TrainerError, run_user_trial, trainer_version

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS / "user_command.py"


def loss(lr: float, depth: int) -> float:  # tests/user_trainers.py's formula
    return 3.0 + 0.1 * (math.log2(lr) + 7) ** 2 - 0.01 * depth


def sweep_file(folder: Path, name: str, top: str, lrs=(2**-7,), depths=(2,), retries: int = 2) -> Path:
    """A sweep file whose top level names the trainer (``top``), beside a copy of the trainers
    module (imported from the sweep file's folder, as a script's neighbour would be)."""
    shutil.copy(TESTS / "user_trainers.py", folder / "cps_lab_trainers.py")
    shutil.copy(SCRIPT, folder / "user_command.py")
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nmodel = "tiny"\nparameterizations = ["completep"]\n{top}\n'
        f"[grid]\nwidth = [32]\ndepth = {list(depths)}\nlr = {list(lrs)}\n"
        "[train]\nsteps = 10\nbatch_size = 4\nwarmup_steps = 2\neval_interval = 5\n"
        f"[resources]\ncpus_per_trial = 1\nmax_retries = {retries}\n"
    )
    return path


# ---------------------------------------------------------------- the function, without Ray


def test_a_function_trains_a_trial_into_a_row():
    config = TrialConfig(trainer="user_trainers:quadratic", lr=2**-6, depth=4, steps=10)
    points = []
    result = run_user_trial(config, points.append, paths=[str(TESTS)])
    assert result.status == "ok" and result.final_val_loss == pytest.approx(loss(2**-6, 4))
    assert result.final_train_loss == pytest.approx(loss(2**-6, 4) + 0.1) and result.n_params == 1234
    assert [p.step for p in result.curve] == [5, 10] and list(result.curve) == points
    assert result.curve[0].tokens == 5 * config.batch_size * config.seq_len  # derived when not reported
    assert math.isnan(result.curve[1].lr)  # a key not reported is NaN
    assert result.steps_done == 10 and result.flops == config.flops and result.diverged_at_step is None
    row = result.row()
    assert row["trial_id"] == config.trial_id and row["trainer"] == "user_trainers:quadratic"


def test_the_function_gets_every_field_the_rules_and_the_id():
    config = TrialConfig(trainer="user_trainers:remember", parameterization="completep", depth=8)
    run_user_trial(config, paths=[str(TESTS)], device="cpu", threads=2)
    given = sys.modules["user_trainers"].SEEN[-1]
    assert set(TrialConfig.field_names()) <= set(given) and given["trial_id"] == config.trial_id
    rules = given["rules"]
    assert rules == config.rules().to_dict() and rules["depth_mult"] == 4.0
    assert isinstance(rules["groups"]["hidden_weight"], dict) and given["threads"] == 2
    json.dumps(given)  # plain data: a command gets the same as JSON


def test_an_exception_in_user_code_is_a_trainer_error_with_its_traceback():
    config = TrialConfig(trainer="user_trainers:raises", depth=4)
    with pytest.raises(TrainerError) as e:
        run_user_trial(config, paths=[str(TESTS)])
    text = str(e.value)
    assert "trainer user_trainers:raises raised" in text and "Traceback" in text
    assert "user_trainers.py" in text and "ZeroDivisionError: the user's bug at depth 4" in text


def test_a_nan_loss_is_a_diverged_row_not_an_error():
    config = TrialConfig(trainer="user_trainers:returns_nan", steps=10)
    result = run_user_trial(config, paths=[str(TESTS)])
    assert result.status == "diverged" and math.isnan(result.final_val_loss)
    assert result.diverged_at_step == 1 and result.steps_done == 1 and result.final_train_loss == 5.0


@pytest.mark.parametrize(
    "entry, message",
    [
        ("user_trainers:wrong_keys", "returned unknown key(s) ['final_loss']; return final_val_loss"),
        ("user_trainers:bad_report", "report(): unknown key(s) ['val_los']; use step, train_loss"),
    ],
)
def test_a_malformed_result_or_curve_point_is_a_trainer_error(entry, message):
    with pytest.raises(
        TrainerError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        run_user_trial(TrialConfig(trainer=entry), paths=[str(TESTS)])


# ---------------------------------------------------------------- the command template, without Ray


def command(*args: str) -> str:
    return json.dumps([sys.executable, str(SCRIPT), "--lr={lr}", "--depth={depth}", *args])


def test_a_command_prints_its_curve_and_its_result_as_json_lines(tmp_path):
    config = TrialConfig(command=command(), lr=2**-8, depth=2, steps=10)
    result = run_user_trial(config, paths=[str(tmp_path)])
    assert result.status == "ok" and result.final_val_loss == pytest.approx(loss(2**-8, 2))
    assert [p.step for p in result.curve] == [5, 10]  # "starting" is the script's own output
    assert result.n_params == len(config.rules().groups)  # it read the config from COMPLETEP_TRIAL


def test_a_failing_command_or_a_bad_last_line_is_a_trainer_error(tmp_path):
    with pytest.raises(TrainerError, match=r"exited with status 3; its stderr ends:\nout of cheese"):
        run_user_trial(TrialConfig(command=command("--fail")), paths=[str(tmp_path)])
    quiet = json.dumps([sys.executable, "-c", "print('done')"])
    with pytest.raises(TrainerError, match="its last output line is not JSON"):
        run_user_trial(TrialConfig(command=quiet), paths=[str(tmp_path)])


# ---------------------------------------------------------------- ids and versions


def test_ids_of_the_built_in_trainer_and_of_earlier_releases_are_unchanged(release_fixture):
    from completep_sweep.store import ResultStore

    # Computed by the code before user trainers existed: the new fields leave these ids alone.
    assert TrialConfig().trial_id == "1875ff3a736e714a"
    assert TrialConfig(parameterization="mup", depth=8, lr=2**-9, bias=False).trial_id == "9b4e432cc6eff926"
    rows = ResultStore(release_fixture).load()
    assert len(rows) == 48
    assert all(TrialConfig.from_row(r).trial_id == r["trial_id"] for r in rows.to_dict("records"))


def test_the_trainer_its_version_and_the_command_are_part_of_the_id():
    base = TrialConfig()
    ids = {
        base.trial_id,
        base.replace(trainer="lab:train").trial_id,
        base.replace(trainer="lab:train", trainer_version="2").trial_id,
        base.replace(trainer="lab:other").trial_id,
        base.replace(command='["python", "train.py", "--lr={lr}"]').trial_id,
        base.replace(command='["python", "train.py", "--lr={lr}", "--v=2"]').trial_id,
    }
    assert len(ids) == 6


def test_the_version_rule():
    assert trainer_version("user_trainers:quadratic") == "1.2.3"  # the module's __version__
    assert trainer_version("iniconfig:IniConfig") == importlib.metadata.version("iniconfig")  # its dist
    assert trainer_version("string:capwords") == "0"  # neither


def test_a_sweep_file_names_the_trainer_at_its_top_level(tmp_path):
    path = sweep_file(tmp_path, "lab", 'trainer = "cps_lab_trainers:quadratic"', lrs=(2**-7, 2**-6))
    sweep = parse_sweep(path.read_text(), source=str(path))
    assert {(t.trainer, t.trainer_version, t.command) for t in sweep.trials} == {
        ("cps_lab_trainers:quadratic", "1.2.3", "")
    }
    assert sweep.resolved["trainer"] == {
        "version": "1.2.3",
        "path": list(dict.fromkeys([str(tmp_path), str(Path.cwd())])),
    }
    # A reader of the results takes the version the run recorded, and imports nothing.
    gone = path.read_text().replace("cps_lab_trainers", "not_installed_here")
    recorded = parse_sweep(gone, source=str(path), recorded={"trainer": {"version": "1.2.3"}})
    assert recorded.trials[0].trainer_version == "1.2.3"
    plain = parse_sweep(path.read_text().replace('trainer = "cps_lab_trainers:quadratic"', ""))
    assert "trainer" not in plain.resolved and plain.trials[0].trainer == ""
    assert plain.trials[0].trial_id != sweep.trials[0].trial_id


# ---------------------------------------------------------------- refused before any compute


@pytest.mark.parametrize(
    "top, message",
    [
        ('trainer = "cps_no_such_module:train"', "trainer: module 'cps_no_such_module' does not import"),
        ('trainer = "cps_lab_trainers:missing"', "trainer: module 'cps_lab_trainers' has no 'missing'"),
        (
            'trainer = "cps_lab_trainers:not_callable"',
            "is not callable (it is of type int); define def not_callable",
        ),
        ('trainer = "cps_lab_trainers:one_argument"', "cannot be called as one_argument(config, report)"),
        ('trainer = "cps_lab_trainers"', "trainer: 'cps_lab_trainers' is not \"module:function\""),
        ('trainer = "a:b"\ncommand = ["python3"]', "trainer, command: both are set; keep one"),
        ("command = []", "command: empty; give the program and its arguments"),
        (
            'command = ["python3", "train.py", "--lr={lrr}"]',
            "command: '--lr={lrr}': {lrr} is not a config field",
        ),
        ('command = ["cps-no-such-program"]', "command: 'cps-no-such-program' is not found on PATH"),
    ],
)
def test_a_trainer_that_cannot_run_exits_2_before_any_compute(tmp_path, cli, top, message):
    path = sweep_file(tmp_path, "bad", top)
    for args in (("validate", path), ("run", path, "--no-mlflow")):
        code, _, err = cli(*args, "--results", tmp_path / "results")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()


def test_validate_names_the_trainer(tmp_path, cli):
    code, out, _ = cli("validate", sweep_file(tmp_path, "ok", 'trainer = "cps_lab_trainers:quadratic"'))
    assert code == 0 and "trainer: cps_lab_trainers:quadratic (version 1.2.3)" in out


# ---------------------------------------------------------------- end to end, through Ray Tune


@pytest.mark.slow
def test_a_sweep_of_the_users_function_and_command_through_ray_tune(tmp_path, monkeypatch, capsys):
    import ray

    from completep_sweep.cli import main
    from completep_sweep.store import ResultStore

    monkeypatch.chdir(tmp_path)  # the command's relative script path: from where `run` was started
    results = tmp_path / "results"
    spec = sweep_file(
        tmp_path, "lab", 'trainer = "cps_lab_trainers:varied"', lrs=(2**-7, 0.25), depths=(2, 4), retries=1
    )
    script = "[" + f'"{sys.executable}", "user_command.py", "--lr={{lr}}", "--depth={{depth}}"' + "]"
    by_command = sweep_file(tmp_path, "script", f"command = {script}", lrs=(2**-7, 2**-6))
    try:
        assert main(["run", str(spec), "--results", str(results), "--no-mlflow"]) == 1  # one error row
        store = ResultStore(results / "lab")
        rows = store.load().set_index(["depth", "lr"])
        assert len(rows) == 4 and sorted(rows.status) == ["diverged", "diverged", "error", "ok"]
        assert rows.loc[(2, 2**-7), "final_val_loss"] == pytest.approx(loss(2**-7, 2))
        assert rows.loc[(2, 0.25), "status"] == "diverged" and rows.loc[(4, 0.25), "status"] == "diverged"
        error = rows.loc[(4, 2**-7), "error"]
        assert "ZeroDivisionError: the user's bug at depth 4" in error and "cps_lab_trainers.py" in error
        ok = rows[rows.status == "ok"].trial_id.iloc[0]
        assert list(store.load_curves([ok]).step) == [5, 10]
        capsys.readouterr()

        assert main(["report", str(store.root), "--json", "--no-mlflow"]) == 0
        assert json.loads(capsys.readouterr().out)["loss"] == "final_val_loss"

        finished = {p.name: p.stat().st_mtime_ns for p in store.trials_dir.glob("*.parquet")}
        assert len(finished) == 3  # the error row lives apart and is retried by the next run
        assert main(["run", str(spec), "--results", str(results), "--no-mlflow"]) == 1
        assert "1 ran (0 ok, 0 diverged, 1 error), 3 already done" in capsys.readouterr().out
        assert {p.name: p.stat().st_mtime_ns for p in store.trials_dir.glob("*.parquet")} == finished

        assert main(["run", str(by_command), "--results", str(results), "--no-mlflow"]) == 0
        rows = ResultStore(results / "script").load()
        assert len(rows) == 2 and set(rows.status) == {"ok"}
        assert sorted(rows.final_val_loss) == pytest.approx(sorted(loss(lr, 2) for lr in (2**-7, 2**-6)))
    finally:
        ray.shutdown()
