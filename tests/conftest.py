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
