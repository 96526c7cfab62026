"""First contact (issue 20, the smaller things): a typo in a sweep file named with its close match
and the keys allowed there, `explain` saying which base shape it used, `trial --eval-interval`, and
no traceback when the reader of the output goes away (`validate ... | head`)."""

from __future__ import annotations

import os
import sys

import pytest

SWEEP = """name = "typo"
model = "tiny"
parameterizations = ["mup"]
[grid]
lr = [0.01]
"""


@pytest.mark.parametrize(
    "change, where, meant",
    [
        (("parameterizations = ", "parametrizations = "), "parametrizations:", "'parameterizations'"),
        (
            ("[grid]", "[resources]\ncpu_per_trial = 1\n[grid]"),
            "resources.cpu_per_trial:",
            "'cpus_per_trial'",
        ),
        (("[grid]", '[search]\nmethd = "grid"\n[grid]'), "search.methd:", "'method'"),
    ],
    ids=["top level", "resources", "search"],
)
def test_a_misspelled_key_is_named_with_its_close_match_and_the_allowed_keys(
    tmp_path, cli, change, where, meant
):
    spec = tmp_path / "typo.toml"
    spec.write_text(SWEEP.replace(*change))
    code, _, err = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 2 and where in err and f"did you mean {meant}?" in err and "allowed here:" in err, err
    assert "Field required" not in err and "Extra inputs" not in err


def test_explain_says_which_base_shape_it_used(cli):
    code, out, _ = cli("explain", "--parameterization", "completep", "--width", "64", "--depth", "8")
    assert code == 0 and "base shape: width" in out and "the tiny preset's" in out, out
    code, out, _ = cli(
        "explain", "--parameterization", "completep", "--width", "64", "--depth", "8",
        "--base-width", "32", "--base-depth", "2",
    )  # fmt: skip
    assert code == 0 and "base shape:" not in out, out


def test_trial_takes_an_eval_interval(cli):
    code, out, err = cli(
        "trial", "--parameterization", "mup", "--width", "32", "--depth", "2", "--lr", "0.01", "--steps", "4",
        "--eval-interval", "2", "--json",
    )  # fmt: skip
    assert code == 0 and "eval_interval" not in err, err
    import json

    row = json.loads(out)
    assert row["eval_interval"] == 2 and row["steps_done"] == 4


def test_a_reader_that_goes_away_is_no_traceback(monkeypatch, capsys):
    from completep_sweep.cli import main

    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as `| head` after its lines
    stdout = os.fdopen(write, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", stdout)
    code = main(["explain", "--parameterization", "completep", "--width", "64", "--depth", "8"])
    monkeypatch.undo()
    assert code == 0
    stdout.close()
    assert "Traceback" not in capsys.readouterr().err
