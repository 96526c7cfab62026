"""``validate`` prices GPU trials in GPU-hours from their FLOPs and a stated per-GPU throughput."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

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


def test_most_work_fills_the_dearest_shapes_first_each_up_to_its_most():
    from types import SimpleNamespace as T

    from completep_sweep.estimate import most_work

    reach = [(T(flops=1.0), 4), (T(flops=10.0), 2), (T(flops=5.0), 3)]
    price = lambda t: t.flops  # noqa: E731
    assert most_work(reach, 3, price) == 2 * 10 + 1 * 5
    assert most_work(reach, 9, price) == 2 * 10 + 3 * 5 + 4 * 1
    assert most_work(reach, 20, price) == most_work(reach, 9, price)  # no shape past its most
    assert most_work(reach, 0, price) == most_work(reach, -5, price) == 0


def test_the_most_gpu_hours_of_a_decided_search_count_the_depths_it_may_add(tmp_path, cli, monkeypatch):
    text = GPU_GRID.replace("[2, 8]", "[2, 4, 8]").replace(
        "[train]", '[search]\nmethod = "decided"\nmax_seeds = 4\n[train]'
    )
    monkeypatch.setenv(GPU_TFLOPS_ENV, "0.001")  # whole GPU-hours for a tiny model
    out = {}
    for name, extra in (("grid depths", ""), ("to 32", "max_depth = 32\n")):
        spec = tmp_path / f"{name}.toml"
        spec.write_text(text.replace("max_seeds = 4\n", "max_seeds = 4\n" + extra))
        code, printed, _ = cli("validate", spec, "--results", tmp_path / name)
        assert code == 0, printed
        out[name] = _hours(printed)
        sweep = load_sweep(spec)
    # the most: every shape, the added depths 16 and 32 included, at its most trials (3 x max_seeds and
    # two searches of max_trials_per_shape), priced at its own FLOPs
    search = sweep.spec.search
    cap = 3 * search.max_seeds + 2 * search.max_trials_per_shape
    template = sweep.template
    flops = sum(
        cap * template.replace(parameterization=p, depth=d).flops
        for p in ("mup", "completep")
        for d in (2, 4, 8, 16, 32)
    )
    expected = flops / (0.001 * 1e12) / 3600
    assert abs(out["to 32"][1] - expected) <= 1 + 1e-3 * expected, (out, expected)
    assert out["to 32"][0] == out["grid depths"][0]  # the fewest trials add no depth


def _seconds(text: str) -> int:
    """fmt.duration read back: '42s', '3m05s', '2h07m'."""
    h, m, s = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text).groups()
    return 3600 * int(h or 0) + 60 * int(m or 0) + int(s or 0)


def test_the_pending_time_of_a_search_divides_by_the_trials_at_once_once(tmp_path, cli):
    from completep_sweep.commands.sweeps import COST_MODEL
    from completep_sweep.search import make_plan

    spec = tmp_path / "cpu.toml"
    spec.write_text(
        GPU_GRID.replace("[train]", '[search]\nmethod = "bracket"\n[train]').split("[resources]")[0]
    )
    code, out, _ = cli("validate", spec, "--results", tmp_path / "r")
    found = re.search(r"about (\S+) \(fewest trials\) to (\S+) \(most\) at (\d+) concurrent", out)
    assert code == 0 and found, out
    fewest, most, at_once = _seconds(found[1]), _seconds(found[2]), int(found[3])
    one, per_flop, per_layer_step = COST_MODEL

    def price(t):
        return one + per_flop * t.flops + per_layer_step * t.depth * t.steps

    sweep = load_sweep(spec)
    plan = make_plan(sweep, pd.DataFrame(), tmp_path)  # nothing measured yet
    pending = plan.planned()
    assert abs(fewest - sum(map(price, pending)) / at_once) <= 1, (out, at_once)
    expected = sum(most_trials * price(t) for t, most_trials in plan.reach()) / at_once
    assert abs(most - expected) <= 60, (out, expected)  # printed to the minute past an hour
