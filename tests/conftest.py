"""Test-wide settings (loopback-only Ray and MLflow, one-thread torch, headless plots) and the
helpers every test module shares, as fixtures: test modules never import each other."""

from __future__ import annotations

import atexit
import dataclasses
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Set before anything imports Ray or MLflow (see README, "Machine notes"); one file declares them.
for _line in (ROOT / "loopback.env").read_text().splitlines():
    if _line.strip() and not _line.startswith("#"):
        os.environ.setdefault(*_line.split("=", 1))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # HuggingFace models are built from a config, never fetched
# Token-file scans are cached under XDG_CACHE_HOME: keep the tests' cache out of the user's home.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="completep-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from completep_sweep.trial import CurvePoint, TrialConfig, TrialResult  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _one_thread_torch():
    import torch

    torch.set_num_threads(1)
    yield


# ---------------------------------------------------------------- a cheap bootstrap by default

CHEAP_BOOTSTRAP = 40
"""Bootstrap resamples ``analyze`` draws in tests that do not ask for the full count: verdicts on
the synthetic sweeps here are clear-cut, and the full count (analysis.lines.N_BOOTSTRAP) makes the
analysis most of a test's time. A test about intervals or calibration opts out with
``@pytest.mark.full_bootstrap``; a call that passes ``n_bootstrap=`` is never changed; ``pytest
--full-bootstrap`` runs every test with the full count."""


def _analyze_defaults() -> dict:
    from completep_sweep.analysis import analyze

    defaults = analyze.__kwdefaults__ or {}
    if "n_bootstrap" not in defaults:  # fail loudly rather than silently run the full bootstrap
        raise RuntimeError(
            "tests/conftest.py: analyze() has no keyword-only n_bootstrap default any more; "
            "update the cheap-bootstrap fixtures (_cheap_bootstrap, _full_bootstrap_opt_out)"
        )
    return defaults


def pytest_addoption(parser):
    parser.addoption(
        "--full-bootstrap",
        action="store_true",
        help="every analyze() draws its full bootstrap (no cheap default; see CHEAP_BOOTSTRAP)",
    )


@pytest.fixture(scope="session", autouse=True)
def _cheap_bootstrap(pytestconfig):
    """Session-wide, so that module- and session-scoped fixtures that analyse are cheap too."""
    defaults = _analyze_defaults()
    full = defaults["n_bootstrap"]
    if not pytestconfig.getoption("--full-bootstrap"):
        defaults["n_bootstrap"] = min(full, CHEAP_BOOTSTRAP)
    yield full
    defaults["n_bootstrap"] = full


@pytest.fixture(autouse=True)
def _full_bootstrap_opt_out(request, monkeypatch, _cheap_bootstrap):
    """``@pytest.mark.full_bootstrap``: this test's own ``analyze`` calls draw the full count
    (fixtures of a wider scope that it uses were computed cheaply)."""
    if request.node.get_closest_marker("full_bootstrap") is not None:
        monkeypatch.setitem(_analyze_defaults(), "n_bootstrap", _cheap_bootstrap)
    yield


# ---------------------------------------------------------------- sweep files and the CLI


def sweep_text(
    name: str,
    *,
    parameterizations=("mup", "completep"),
    depths=(2, 4),
    lrs=(2**-7, 2**-6),
    steps: int = 30,
    width: int = 32,
    extra_train: str = "",
    resources: str = "",
) -> str:
    """A small sweep file: byte corpus, short sequences, a few steps per trial."""
    return f"""
name = "{name}"
model = "tiny"
parameterizations = {list(parameterizations)!r}
[grid]
width = [{width}]
depth = {list(depths)!r}
lr = {list(lrs)!r}
[model_overrides]
seq_len = 32
[train]
steps = {steps}
batch_size = 4
warmup_steps = 5
eval_interval = {max(1, steps // 2)}
eval_batches = 1
{extra_train}
[resources]
cpus_per_trial = 1
{resources}
""".replace("'", '"')


@pytest.fixture
def make_spec(tmp_path):
    def make(name: str = "e2e", **kw):
        path = tmp_path / f"{name}.toml"
        path.write_text(sweep_text(name, **kw))
        return path

    return make


@pytest.fixture
def cli(capsys):
    """Run ``completep-sweep ARGS`` in process: (exit code, stdout, stderr); argparse exits too."""
    from completep_sweep.cli import main

    def run(*argv):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def free_port():
    def find() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return find


# ---------------------------------------------------------------- drivers in their own session


CLI = [sys.executable, "-m", "completep_sweep.cli"]


class Driver:
    """`completep-sweep run` in its own session, as a user or a scheduler would start it."""

    def __init__(self, spec: Path, results: Path, log: Path, uri: str | None = None, extra=()):
        mlflow = ["--tracking-uri", uri] if uri else ["--no-mlflow"]
        self.log = log
        self.proc = subprocess.Popen(
            [*CLI, "run", str(spec), "--results", str(results), *mlflow, *extra],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_until(self, predicate, what: str, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the driver exited ({self.proc.returncode}) before {what}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-3000:]}")

    def session(self) -> list[int]:
        """Live processes of the driver's session (Ray's helpers and workers included)."""
        alive = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X") and int(fields[3]) == self.proc.pid:  # field 6: session id
                alive.append(int(entry.name))
        return alive

    def kill_all(self) -> None:
        for pid in self.session():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def start_driver():
    """Start `completep-sweep run` as a child in its own session; whatever is left is killed after."""
    started = []

    def start(*args, **kwargs) -> Driver:
        started.append(Driver(*args, **kwargs))
        return started[-1]

    yield start
    for driver in started:
        driver.kill_all()


# ---------------------------------------------------------------- rows


def _result(
    *,
    lr: float = 0.01,
    status: str = "ok",
    curve_steps=(10, 20),
    final_val_loss: float | None = None,
    worker: str = "",
    code_version: str = "test",
    flops: float = 1e9,
    wall_time_s: float = 1.5,
    **config,
) -> TrialResult:
    config = TrialConfig(**{"sweep": "s", "lr": lr, **config})
    ok = status == "ok"
    curve = tuple(
        CurvePoint(step=s, tokens=s * 10, train_loss=4 - s / 100 + lr, val_loss=4.1 - s / 100 + lr, lr=lr)
        for s in curve_steps
    )
    val = final_val_loss if final_val_loss is not None else (curve[-1].val_loss if ok else math.nan)
    return TrialResult(
        config=config,
        status=status,
        final_train_loss=curve[-1].train_loss,
        final_val_loss=val,
        diverged_at_step=None if ok else 5,
        steps_done=curve_steps[-1] if ok else 5,
        clip_fraction=0.0,
        flops=flops,
        n_params=1000,
        wall_time_s=wall_time_s,
        device="cpu",
        worker=worker,
        started_at="2026-01-01T00:00:00+00:00",
        code_version=code_version,
        curve=curve,
    )


@pytest.fixture(scope="session")
def make_result():
    """A finished TrialResult without training: ``make_result(lr=..., status=..., **config fields)``."""
    return _result


def _tiny_trial(**kw) -> TrialConfig:
    defaults = dict(
        parameterization="completep",
        width=32,
        depth=2,
        base_width=32,
        base_depth=2,
        seq_len=32,
        batch_size=8,
        steps=60,
        warmup_steps=5,
        eval_interval=20,
        eval_batches=2,
        lr=2**-6,
    )
    return TrialConfig(**{**defaults, **kw})


@pytest.fixture(scope="session")
def tiny_trial():
    """A trial that trains in about a second: ``tiny_trial(steps=20, **any other config field)``."""
    return _tiny_trial


@pytest.fixture(scope="session")
def stale_grid() -> str:
    """A 2-parameterization, 2-depth, 3-lr sweep file of 40 steps, for results made without training."""
    return """name = "stale"
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
depth = [2, 4]
lr = [0.0078125, 0.015625, 0.03125]
[train]
steps = 40
"""


# Measured values of a synthetic row that no analysis varies (loss, status and FLOPs come from _trials).
SYNTHETIC_MEASURED = dict(
    final_train_loss=math.nan,
    steps_done=600,
    clip_fraction=0.0,
    n_params=1000,
    wall_time_s=1.0,
    device="cpu",
    worker="",
    started_at="",
    code_version="test",
    error="",
)
CONFIG_FIELDS = frozenset(TrialConfig.field_names())
RESULT_FIELDS = frozenset(f.name for f in dataclasses.fields(TrialResult)) - {"config", "curve"}


def _trials(
    opt_log2,
    *,
    parameterization="completep",
    depths=(2, 4, 8, 16, 32),
    width=64,
    base_width=64,
    base_depth=2,
    lr_log2=range(-12, -3),
    seeds=(0,),
    noise=0.0,
    c=0.05,
    l0=lambda depth, width: 3.0,
    diverge_log2=math.inf,
    rng_seed=0,
    flops=lambda depth, width: 1e12 * depth,
    extra=None,
) -> pd.DataFrame:
    """Synthetic rows: loss(lr) = l0(depth, width) + c·(log2 lr − opt_log2(depth, width))² + noise;
    lr above ``diverge_log2`` diverges. Each row is ``TrialResult.row()`` of a real ``TrialConfig``
    (``extra``: more config fields, or measured ones), so the rows follow the schema wherever it goes."""
    extra = dict(extra or {})
    unknown = set(extra) - CONFIG_FIELDS - RESULT_FIELDS
    if unknown:
        raise TypeError(
            f"make_trials(extra=...): {sorted(unknown)} are not fields of TrialConfig or TrialResult"
        )
    config_extra = {k: v for k, v in extra.items() if k in CONFIG_FIELDS}
    measured = {**SYNTHETIC_MEASURED, **{k: v for k, v in extra.items() if k in RESULT_FIELDS}}
    rng = np.random.default_rng(rng_seed)
    widths = width if isinstance(width, (tuple, list)) else (width,)
    rows = []
    for w in widths:
        for depth in depths:
            for e in lr_log2:
                for seed in seeds:
                    diverged = e > diverge_log2
                    loss = l0(depth, w) + c * (e - opt_log2(depth, w)) ** 2 + noise * rng.standard_normal()
                    config = TrialConfig(
                        **{
                            **config_extra,
                            "parameterization": parameterization,
                            "width": w,
                            "depth": depth,
                            "base_width": base_width,
                            "base_depth": base_depth,
                            "lr": 2.0**e,
                            "seed": seed,
                        }
                    )
                    result = TrialResult(
                        **{
                            **measured,
                            "config": config,
                            "status": "diverged" if diverged else "ok",
                            "final_val_loss": math.nan if diverged else loss,
                            "diverged_at_step": 10 if diverged else None,
                            "flops": flops(depth, w),
                        }
                    )
                    rows.append(result.row())
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def make_trials():
    """Synthetic trial rows with a known optimum (see ``_trials``), for analysis and report tests."""
    return _trials


@pytest.fixture
def release_fixture(tmp_path) -> Path:
    """A copy of real rows written by completep-sweep 0.1.0 (tests/fixtures/release-0.1.0/spec.toml
    says how): reading may index or quarantine files, never in the repository."""
    return Path(shutil.copytree(FIXTURES / "release-0.1.0", tmp_path / "release-0.1.0"))
