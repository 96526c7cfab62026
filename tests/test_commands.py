"""report / export / status through the CLI on results written by the store (no training)."""

import io
import math
import json

import pandas as pd
import pytest

from completep_sweep.cli import main
from completep_sweep.store import ResultStore


@pytest.fixture
def results(tmp_path, make_trials):
    """A results folder: CompleteP's optimum stays at 2^-7 across depth, µP's falls an octave per doubling."""
    store = ResultStore(tmp_path / "demo")
    stable = make_trials(lambda d, w: -7.0, parameterization="completep", depths=(2, 4, 8, 16), base_width=64)
    drifting = make_trials(lambda d, w: -4.0 - math.log2(d), parameterization="mup",
                           depths=(2, 4, 8, 16), base_width=64, lr_log2=range(-14, -1))
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
    assert verdict[("completep", "depth")] == "transfers"
    assert verdict[("mup", "depth")] == "drifts"
    assert (results.root / "report" / "verdict.json").is_file()
    assert any(p.suffix == ".png" for p in (results.root / "report").iterdir())


def test_report_text_names_the_tolerance(results, cli):
    code, out, _ = cli("report", results.root, "--no-mlflow", "--tolerance", "0.5")
    assert code == 0 and "0.5" in out and "drifts" in out and "transfers" in out and "report:" in out


def test_export_formats_parse_back(results, tmp_path, cli):
    code, out, _ = cli("export", results.root, "--format", "csv")
    assert code == 0
    df = pd.read_csv(io.StringIO(out))
    assert {"parameterization", "depth", "hp", "optimum"} <= set(df.columns) and len(df) == 8
    target = tmp_path / "hps.json"
    code, _, _ = cli("export", results.root, "--format", "json", "-o", target,
                     "--target-width", "1024", "--target-depth", "64")
    assert code == 0
    rows = json.loads(target.read_text())
    assert rows and {r["parameterization"] for r in rows} == {"completep", "mup"}


@pytest.mark.parametrize("argv, field", [
    (["export", "{root}", "--format", "csv", "--target-width", "128"], "--target-depth"),
    (["export", "{root}", "--format", "xlsx"], "--format"),
    (["report", "{root}", "--tolerance", "-1"], "--tolerance"),
    (["report", "/nonexistent/sweep"], "RESULTS_DIR"),
])
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
