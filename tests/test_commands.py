"""report / export / status through the CLI on results written by the store (no training)."""

import io
import json
import math

import pandas as pd
import pytest

from completep_sweep.answer import RECOMMENDATION_COLUMNS
from completep_sweep.cli import main
from completep_sweep.presets import load_preset
from completep_sweep.store import ResultStore


@pytest.fixture
def results(tmp_path, make_trials):
    """A results folder: CompleteP's optimum stays at 2^-7 across depth, µP's falls an octave per doubling."""
    store = ResultStore(tmp_path / "demo")
    stable = make_trials(
        lambda d, w: -7.0,
        parameterization="completep",
        depths=(2, 4, 8, 16),
        base_width=64,
        seeds=(0, 1),
        noise=0.001,
    )
    drifting = make_trials(
        lambda d, w: -4.0 - math.log2(d),
        parameterization="mup",
        seeds=(0, 1),
        noise=0.001,
        depths=(2, 4, 8, 16),
        base_width=64,
        lr_log2=range(-14, -1),
    )
    for row in pd.concat([stable, drifting]).to_dict("records"):
        row["trial_id"] = row["trial_id"].replace(".", "_")
        store.write_row(row, [])
    return store


def test_report_json_verdicts(results, cli):
    code, out, _ = cli("report", results.root, "--json", "--no-mlflow")
    assert code == 0
    d = json.loads(out)
    assert {"optima", "transfer", "regret"} <= set(d)
    verdict = {(t["parameterization"], t["axis"]): t["verdict"] for t in d["transfer"] if t["hp"] == "lr"}
    assert verdict[("completep", "depth")] == "keep"
    assert verdict[("mup", "depth")] == "re-tune"
    assert d["tolerance"] == 1.0 and d["loss"] == "final_val_loss"
    mup = next(t for t in d["transfer"] if t["parameterization"] == "mup")
    assert mup["regret_tolerance"] == 1.0 and mup["deepest_regret_low"] > 1.0 and mup["worst_at"] == 16
    assert (results.root / "report" / "verdict.json").is_file()
    assert any(p.suffix == ".png" for p in (results.root / "report").iterdir())


def test_report_text_names_the_tolerance(results, cli):
    code, out, _ = cli("report", results.root, "--no-mlflow", "--regret-tolerance", "0.5")
    assert code == 0 and "report:" in out
    assert "keep = keeping the base optimum costs at most 0.5% of loss" in out
    assert "keep: at most 0.5% of loss everywhere" in out and "(> 0.5%)" in out and "(≤ 0.5%)" in out
    assert "re-tune" in out and "keep" in out
    code, _, err = cli("report", results.root, "--no-mlflow", "--tolerance", "0.5")
    assert code == 2 and "--tolerance" in err  # the drift tolerance of the old method is gone


def test_export_formats_parse_back(results, tmp_path, cli):
    code, out, _ = cli("export", results.root, "--format", "csv")
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    assert {"parameterization", "depth", "hp", "optimum"} <= set(df.columns) and len(df) == 8
    target = tmp_path / "hps.json"
    code, _, _ = cli(
        "export",
        results.root,
        "--format",
        "json",
        "-o",
        target,
        "--target-width",
        "1024",
        "--target-depth",
        "64",
    )
    assert code == 0
    rows = json.loads(target.read_text())
    assert rows and {r["parameterization"] for r in rows} == {"completep", "mup"}


def test_report_json_recommendations_contract(results, cli):
    code, out, _ = cli("report", results.root, "--json", "--no-mlflow")
    recs = {r["parameterization"]: r for r in json.loads(out)["recommendations"]}
    assert list(recs) == ["mup", "completep"]  # the paper's order, not alphabetical
    for r in recs.values():
        assert set(r) == set(RECOMMENDATION_COLUMNS)
        assert r["hp"] == "lr" and r["depth_payoff"] in {"helps", "hurts", "flat", "inconclusive"}
        assert r["base_low"] <= r["base_optimum"] <= r["base_high"]
        assert r["tolerance"] == 1.0 and r["deepest_depth"] == 16 and r["depths"] == "2-16"
    assert recs["completep"]["verdict"] == "keep" and recs["mup"]["verdict"] == "re-tune"
    assert abs(math.log2(recs["completep"]["deepest_optimum"]) + 7) < 0.25
    assert abs(math.log2(recs["mup"]["deepest_optimum"]) + 8) < 0.25  # 2^(-4 - log2 16): re-tuned there
    assert abs(math.log2(recs["completep"]["base_optimum"]) + 7) < 0.25  # built at 2^-7
    assert abs(math.log2(recs["mup"]["base_optimum"]) + 5) < 0.25  # 2^(-4 - log2 2)
    # µP's optimum falls 3 octaves by depth 16, so keeping the base lr costs loss there; CompleteP's does not
    assert recs["mup"]["max_regret_percent"] > 1 > recs["completep"]["max_regret_percent"]
    assert recs["mup"]["max_regret_depth"] == 16


def test_report_first_screen_says_what_to_use(results, cli):
    code, out, _ = cli("report", results.root, "--no-mlflow")
    first = out.splitlines()[:12]
    assert any("What to use" in line for line in first)
    assert any("CompleteP: keep lr = 2^-7" in line for line in first), first
    assert any("µP: re-tune lr with depth" in line for line in first), first


def test_export_for_a_target_depth_alone(results, cli):
    code, out, _ = cli("export", results.root, "--format", "csv", "--target-depth", "64")
    assert code == 0
    df = pd.read_csv(io.StringIO(out), keep_default_na=False).set_index("parameterization")
    assert list(df.index) == ["mup", "completep"] and set(df["depth"]) == {64}
    assert set(df["width"]) == {64}  # the tuned width, since none was asked for
    assert df.loc["completep", "residual_multiplier"] == pytest.approx(2 / 64)  # (L / L_base)^-1
    assert "lr is not a firm keep (re-tune)" in df.loc["mup", "warning"]
    assert "outside the tested 2-16" in df.loc["mup", "warning"]
    assert "not a firm keep" not in df.loc["completep", "warning"]
    code, out, _ = cli("export", results.root, "--format", "csv", "--target-width", "256")
    assert code == 0 and set(pd.read_csv(io.StringIO(out))["width"]) == {256}


def test_export_toml_is_one_sweep_file_that_validates_with_the_tuned_settings(results, cli, tmp_path):
    import tomllib

    code, out, _ = cli("export", results.root, "--format", "toml", "--target-depth", "16")
    assert code == 0
    pasted = tomllib.loads(out)  # the whole output is one file: one [grid], one [train]
    rows = results.load()
    assert pasted["parameterizations"] == ["completep"] and "also analysed: µP" in out
    assert pasted["grid"] == {"width": [64], "depth": [16]}
    assert abs(math.log2(pasted["train"]["lr"]) + 7) < 0.25
    for key in ("steps", "batch_size", "warmup_steps"):  # the settings the lr was tuned with
        assert pasted["train"][key] == rows[key].iloc[0], key
    preset = load_preset("tiny")  # a setting the preset already has is not repeated
    for key in ("seq_len", "eval_batches", "vocab_size"):
        got = {**pasted["model_overrides"], **pasted["train"]}.get(key, preset.get(key))
        assert got == rows[key].iloc[0], key
    spec = tmp_path / "pasted.toml"
    spec.write_text(out)
    code, _, err = cli("validate", spec, "--results", tmp_path / "res")
    assert code == 0, err
    flags = out.strip().splitlines()[-1]
    assert flags.startswith("# completep-sweep trial ") and "--depth 16" in flags
    assert (
        f"--steps {rows['steps'].iloc[0]}" in flags and f"--batch-size {rows['batch_size'].iloc[0]}" in flags
    )
    code, out, _ = cli(
        "export", results.root, "--format", "toml", "--target-depth", "16", "--parameterization", "mup"
    )
    assert (
        code == 0 and tomllib.loads(out)["parameterizations"] == ["mup"] and "also analysed: CompleteP" in out
    )


def test_export_refuses_a_width_the_model_cannot_build_with_the_nearest_ones(results, cli):
    head = int(results.load()["head_dim"].iloc[0])
    width = 2 * head + head // 2
    code, _, err = cli("export", results.root, "--format", "toml", "--target-width", width)
    assert code == 2 and f"multiple of head_dim {head}" in err and f"use {2 * head} or {3 * head}" in err, err
    code, _, err = cli("export", results.root, "--format", "csv", "--parameterization", "sp")
    assert code == 2 and "--parameterization sp: not in this sweep's answer" in err, err


def test_trial_set_takes_any_sweep_file_setting_and_refuses_unknown_or_doubled_keys(cli):
    base = ["trial", "--parameterization", "completep", "--width", "32", "--depth", "1", "--lr", "0.01"]
    code, out, err = cli(*base, "--steps", "2", "--set", "seq_len=16", "--set", "weight_decay=0.05", "--json")
    assert code == 0, err
    row = json.loads(out)
    assert row["seq_len"] == 16 and row["weight_decay"] == 0.05 and row["steps"] == 2
    code, _, err = cli(*base, "--set", "seq_lenn=16")
    assert code == 2 and "did you mean 'seq_len'" in err
    code, _, err = cli(*base, "--steps", "2", "--set", "steps=3")
    assert code == 2 and "steps is also given" in err


@pytest.mark.parametrize(
    "argv, field",
    [
        (["export", "{root}", "--format", "toml"], "--target-depth"),
        (["export", "{root}", "--format", "xlsx"], "--format"),
        (["report", "{root}", "--regret-tolerance", "-1"], "--regret-tolerance"),
        (["report", "{root}", "--regret-tolerance", "0"], "--regret-tolerance"),
        (["report", "/nonexistent/sweep"], "SWEEP:"),
    ],
)
def test_bad_report_arguments_exit_2(results, capsys, argv, field):
    argv = [a.format(root=results.root) for a in argv]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and field in err


def test_report_on_empty_results_says_run_first(tmp_path, cli):
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    code, _, err = cli("report", tmp_path / "empty", "--no-mlflow")
    assert code == 2 and "run" in err


def test_status_watch_shows_running_trials_and_the_latest_finished(results):
    import time

    from completep_sweep.commands.status import _status_text
    from completep_sweep.results import open_results

    results.write_live(
        {
            "t1": {
                "trial": "mup w64 d4 lr=2^-7 seed 0",
                "started": time.time() - 5,
                "step": 40,
                "steps": 100,
                "val_loss": 3.25,
            }
        }
    )
    text = _status_text(open_results(results), recent=3)
    assert "running (1):" in text and "40/100" in text and "3.2500" in text and "lr=2^-7" in text
    assert "latest finished (3 of " in text
    assert "running" not in _status_text(open_results(results), recent=0)  # plain `status`: counts only
    results.live_path.unlink()
    assert "running: none (no live driver" in _status_text(open_results(results), recent=3)
