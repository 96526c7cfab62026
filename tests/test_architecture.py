"""The house rules: the trial schema is declared once, module boundaries hold, old results still load."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from completep_sweep import trial as trial_module
from completep_sweep.trial import ROW_COLUMNS, Role, TrialConfig, check_roles, fields_with, role

PACKAGE = Path(trial_module.__file__).resolve().parent
MAX_MODULE_LINES = 350


def test_a_field_without_a_role_is_refused():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithRoles:
        width: int = role(Role.SHAPE, 64)

    check_roles(WithRoles)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Forgot(WithRoles):
        new_knob: float = 0.5

    with pytest.raises(TypeError, match="new_knob has no role"):
        check_roles(Forgot)


def test_everything_else_is_derived_from_the_roles():
    from completep_sweep.analysis.prepare import HP_FIELDS
    from completep_sweep.presets import MODEL_FIELDS, TRAIN_FIELDS
    from completep_sweep.shape import ModelConfig
    from completep_sweep.store import TRIAL_SCHEMA
    from completep_sweep.tracking.layout import CHILD_PARAMS

    names = set(TrialConfig.field_names())
    labels = {"sweep", "model"}
    # Every field is settable in exactly one place, or is a label, the parameterization or the shape.
    assert MODEL_FIELDS.isdisjoint(TRAIN_FIELDS)
    derived = set(fields_with(Role.DERIVED, Role.TRAINER))  # the trainer: the sweep file's top level
    assert MODEL_FIELDS | TRAIN_FIELDS | labels | derived | {"parameterization", "width", "depth"} == names
    assert {"lr", "init_std", "steps"} <= set(HP_FIELDS) and "seed" not in HP_FIELDS
    assert set(ModelConfig.field_names()) <= names  # model config = the trial's fields of those names
    assert TRIAL_SCHEMA.names == list(ROW_COLUMNS)
    assert {"parameterization", "width", "depth", "seed", "alpha"} <= set(CHILD_PARAMS)
    # trial_id hashes every field but the labels.
    config = TrialConfig()
    assert config.replace(sweep="x", model="y").trial_id == config.trial_id
    for name in names - labels - {"parameterization"}:
        value = getattr(config, name)
        changed = (
            {
                bool: lambda v: not v,
                str: lambda v, name=name: "linear" if name == "decay" else v + "x",
                int: lambda v: v * 2 or 1,
                float: lambda v: v * 0.75 or 0.5,
            }[type(value)]
            if value is not None
            else None
        )
        if changed is not None:
            assert config.replace(**{name: changed(value)}).trial_id != config.trial_id, name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_runner_imports_ray_and_only_tracking_imports_mlflow():
    owners = {"ray": PACKAGE / "runner", "mlflow": PACKAGE / "tracking"}
    for path in PACKAGE.rglob("*.py"):
        for backend, home in owners.items():
            if backend in _imports(path):
                assert home in path.parents, f"{path.relative_to(PACKAGE)} imports {backend}"


def test_the_core_loads_neither_ray_nor_mlflow():
    core = [
        "model",
        "train",
        "analysis",
        "store",
        "sweep",
        "results",
        "outcome",
        "errors",
        "report",
        "plots",
        "tables",
        "coord_check",
        "cli",
    ]
    code = (
        "import sys\n"
        + "".join(f"import completep_sweep.{m}\n" for m in core)
        + "bad = [m for m in ('ray', 'mlflow') if m in sys.modules]\nassert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_module_outgrows_its_job():
    sizes = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert max(sizes.values()) <= MAX_MODULE_LINES, {k: v for k, v in sizes.items() if v > MAX_MODULE_LINES}


def test_no_test_module_imports_another():
    tests = Path(__file__).resolve().parent
    mine = {p.stem for p in tests.glob("test_*.py")} | {"conftest"}
    for path in tests.glob("test_*.py"):
        assert not (_imports(path) & mine), (
            f"{path.name} imports a test module; share it via conftest fixtures"
        )


def test_results_written_by_release_0_1_0_load_and_analyse_the_same(release_fixture):
    """Rows written by the first release (real trials) read, hash and analyse as they did then."""
    from completep_sweep.analysis import analyze
    from completep_sweep.store import ResultStore

    store = ResultStore(release_fixture)
    rows = store.load()
    assert len(rows) == 48 and rows.trial_id.is_unique and set(rows.status) == {"ok", "diverged"}
    assert store.load_curves().trial_id.nunique() == 46  # a diverged trial's curve file is empty
    for row in rows.to_dict("records"):  # same inputs, same id: a re-run would skip these trials
        assert TrialConfig.from_row(row).trial_id == row["trial_id"]
    # The measured facts of each shape are what release 0.1.0 computed; the refined optimum and its
    # interval are a better estimator since 0.2.0 (a basin fit), so they are not compared.
    expected = pd.read_csv(release_fixture / "expected_optima.csv")
    facts = [
        "parameterization",
        "width",
        "depth",
        "hp",
        "optimum",
        "loss",
        "n_seeds",
        "n_diverged",
        "n_points",
    ]
    pd.testing.assert_frame_equal(
        analyze(rows).optima[facts].reset_index(drop=True), expected[facts], check_dtype=False
    )
