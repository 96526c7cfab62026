"""Bad sweep files from the reliability round 3 (issue 17): hostile names, huge and overflowing grids.

Each ends before any compute in one line naming the field and the fix, exit 2, and leaves the
results folder untouched (it is not even created).
"""

from __future__ import annotations

import pytest

import completep_sweep.sweep as sweep_module
from completep_sweep.sweep import SpecError, parse_sweep
from completep_sweep.sweepfile import MAX_NAME_LENGTH, RESERVED_NAMES

BODY = """
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
width = [32]
depth = [2, 4]
lr = { log2_range = [-8, -6] }
[train]
steps = 10
batch_size = 4
"""


def _file(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def _refused(cli, tmp_path, text: str, *needles: str) -> str:
    """validate and run both exit 2 with one line holding every needle; nothing is written."""
    spec, results = _file(tmp_path, text), tmp_path / "results"
    for argv in (("validate",), ("run", "--no-mlflow")):
        code, _, err = cli(*argv, spec, "--results", results)
        line = err.strip()
        assert code == 2, (argv, err)
        assert len(line.splitlines()) == 1, err
        assert "Traceback" not in line and all(n in line for n in needles), (needles, line)
        assert not results.exists()
    return line


def test_name_with_a_final_newline_is_refused(cli, tmp_path):
    # A regex "$" matches before a final newline: the name must be matched whole.
    line = _refused(cli, tmp_path, 'name = "odd\\n"\n' + BODY, "name:", "'odd\\n'", "letters, digits")
    assert line.endswith("(it names results/<name>/)")


def test_name_past_the_file_system_limit_is_refused(cli, tmp_path):
    _refused(cli, tmp_path, f'name = "{"a" * 300}"\n' + BODY, "name:", "300 characters", "at most 100")
    assert parse_sweep(f'name = "{"a" * MAX_NAME_LENGTH}"\n' + BODY).name == "a" * MAX_NAME_LENGTH
    with pytest.raises(SpecError, match=f"{MAX_NAME_LENGTH + 1} characters"):
        parse_sweep(f'name = "{"a" * (MAX_NAME_LENGTH + 1)}"\n' + BODY)


@pytest.mark.parametrize(
    "name, needle",
    [
        *((n, "is reserved") for n in sorted(RESERVED_NAMES)),
        ("MLflow.DB-Journal", "is reserved"),  # case-insensitive file systems (macOS, Windows)
        ("MLARTIFACTS", "is reserved"),
        (".hidden", "starts with '.'"),
        ("-rf", "starts with '-'"),
    ],
)
def test_reserved_store_names_are_refused(cli, tmp_path, name, needle):
    assert {
        "mlflow.db",
        "mlflow.db-journal",
        "mlflow.db-wal",
        "mlflow.db-shm",
        "mlartifacts",
    } <= RESERVED_NAMES
    _refused(cli, tmp_path, f'name = "{name}"\n' + BODY, "name:", needle, "name")


def test_a_huge_grid_is_counted_from_its_axes_and_refused_unbuilt(cli, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a trial was built before the grid was counted")

    monkeypatch.setattr(sweep_module, "_config", never)
    monkeypatch.setattr(sweep_module, "_expand", never)
    seeds = list(range(1000))
    text = BODY.replace(
        "lr = { log2_range = [-8, -6] }", f"lr = {{ log2_range = [-64, 64], step = 0.05 }}\nseed = {seeds}"
    )
    # 2 parameterizations x 1 width x 2 depths x 2561 lrs x 1000 seeds: gigabytes if it were built.
    _refused(
        cli,
        tmp_path,
        'name = "huge"\n' + text,
        "grid:",
        "parameterizations 2 x width 1 x depth 2 x lr 2561 x seed 1000 = 10,244,000 trials",
        "cap of 100,000",
        "shorten an axis",
    )


def test_the_count_is_exactly_the_expansion(monkeypatch):
    text = 'name = "exact"\n' + BODY  # 2 x 1 x 2 x 3 = 12 trials
    monkeypatch.setattr(sweep_module, "MAX_GRID_TRIALS", 12)
    assert len(parse_sweep(text).trials) == 12
    monkeypatch.setattr(sweep_module, "MAX_GRID_TRIALS", 11)
    with pytest.raises(SpecError, match="= 12 trials, above the cap of 11"):
        parse_sweep(text)


@pytest.mark.parametrize(
    "axis, needles",
    [
        ("{ log2_range = [-10, 2000] }", ("grid.lr:", "past 2^±64", "within [-64, 64]")),
        ("{ log2_range = [-10, inf] }", ("grid.lr:", "must be finite")),
        ("{ log2_range = [-inf, 2] }", ("grid.lr:", "must be finite")),
        ("{ log2_range = [nan, 2] }", ("grid.lr:", "must be finite")),
        ("{ log2_range = [-10, 5], step = 1e-300 }", ("grid.lr:", "over 10,000 values", "larger step")),
        ('{ around = "base", octaves = inf }', ("grid.lr.octaves:", "octaves = inf", "at most 64")),
        ('{ around = "base", octaves = nan }', ("grid.lr.octaves:", "octaves = nan", "above 0")),
        ('{ around = "base", octaves = 1e300, step = 1e-300 }', ("grid.lr.octaves:", "at most 64")),
    ],
)
def test_overflowing_log2_range_and_around_are_field_errors(cli, tmp_path, axis, needles):
    # "around" is refused before the other sweep is looked up (there is none here).
    text = 'name = "overflow"\n' + BODY.replace("{ log2_range = [-8, -6] }", axis)
    _refused(cli, tmp_path, text, *needles)
