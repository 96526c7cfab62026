"""Test-wide settings: loopback-only Ray and MLflow, deterministic CPU torch, headless plots."""

import os

# Set before anything imports Ray or MLflow (see README, "Machine notes").
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HTTP_PROXY", "http://127.0.0.1:9")
os.environ.setdefault("NO_PROXY", "localhost,127.0.0.1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread_torch():
    import torch

    torch.set_num_threads(1)
    yield


def sweep_text(name: str, *, parameterizations=("mup", "completep"), depths=(2, 4), lrs=(2**-7, 2**-6),
               steps: int = 30, width: int = 32, extra_train: str = "", resources: str = "") -> str:
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
