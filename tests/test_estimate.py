"""``validate`` prices GPU trials in GPU-hours from their FLOPs and a stated per-GPU throughput."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from completep_sweep.estimate import ASSUMED_GPU_TFLOPS, GPU_TFLOPS_ENV
from completep_sweep.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
GPU_GRID = """name = "gpu"
model = "tiny"
parameterizations = ["mup", "completep"]
[grid]
depth = [2, 8]
lr = [0.001, 0.01]
[train]
steps = 1000
[resources]
gpus_per_trial = 0.5
"""


def _hours(out: str) -> tuple[int, int]:
    found = re.search(r"GPU work: about ([\d,]+) \(fewest trials\) to ([\d,]+) \(most\)", out)
    assert found, out
    return tuple(int(n.replace(",", "")) for n in found.groups())


def test_gpu_trials_are_priced_in_gpu_hours_at_a_stated_throughput(tmp_path, cli, monkeypatch):
    spec = tmp_path / "gpu.toml"
    spec.write_text(GPU_GRID)
    flops = sum(t.flops for t in load_sweep(spec).trials)
    monkeypatch.delenv(GPU_TFLOPS_ENV, raising=False)
    code, out, _ = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 0 and f"{ASSUMED_GPU_TFLOPS:g} TFLOP/s per GPU (assumed" in out, out
    assert "pending work" not in out  # the CPU timings measured here say nothing of GPU trials
    line = next(x for x in out.splitlines() if "GPU work" in x)
    expected = flops / (ASSUMED_GPU_TFLOPS * 1e12) / 3600
    assert f"about {expected:,.0f} GPU-hours" in line, (line, expected)
    monkeypatch.setenv(GPU_TFLOPS_ENV, "500")
    code, out, _ = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 0 and "500 TFLOP/s per GPU (COMPLETEP_GPU_TFLOPS=500, measured)" in out, out


def test_the_paper_sweep_is_a_bracket_design_with_seeds_and_a_gpu_budget(tmp_path, cli, monkeypatch):
    # Stand-in token files (the real ones live on the cluster): the design and its price, not the data.
    for split in ("train", "val"):
        (np.arange(100_000) % 50_000).astype(np.uint16).tofile(tmp_path / f"{split}.bin")
    text = (ROOT / "sweeps" / "paper-depth-transfer.toml").read_text()
    spec = tmp_path / "paper.toml"
    spec.write_text(text.replace('data = "data/slimpajama_gpt2"', f'data = "{tmp_path}"'))
    monkeypatch.delenv(GPU_TFLOPS_ENV, raising=False)
    sweep = load_sweep(spec)
    assert sweep.spec.search.method == "bracket" and len(set(sweep.axes["seed"])) == 3
    code, out, _ = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 0 and "336 trials planned so far" in out and "between 336 and 1120" in out, out
    low, high = _hours(out)
    assert 100 < low < high < 2000, out
    assert f"about {low:,} to {high:,} GPU-hours" in text  # the budget the file's comment names
