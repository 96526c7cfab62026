"""Every benchmark script's ``--quick`` mode, run as `make bench` runs it (a subprocess from the repository
root): it must finish and print numbers that parse and make sense. No speed is ever asserted.

The ones that start Ray (a sweep, or `completep-sweep run`) are ``slow``.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from completep_sweep.store import ResultStore
from completep_sweep.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:e[-+]?\d+)?"


def bench_env() -> dict[str, str]:
    """This environment plus loopback.env (values already set win, as everywhere else)."""
    env = dict(os.environ, MPLBACKEND="Agg")
    for line in (ROOT / "loopback.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            env.setdefault(key, value)
    return env


def run_quick(script: str, *args, timeout: float = 300) -> str:
    """``python benchmarks/SCRIPT --quick ARGS`` from the repository root; its stdout."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *map(str, args)],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def number(text: str) -> float:
    return float(text.replace(",", ""))


def percent(text: str) -> float:
    value = number(text)
    assert 0 <= value <= 100, text
    return value


# ---------------------------------------------------------------- in process, no Ray


def test_step_throughput_quick_reports_a_ratio_per_parameterization():
    out = run_quick("step_throughput.py")
    baseline = re.search(rf"^\s+baseline\s+({NUMBER}) tokens/s$", out, re.M)
    assert baseline and number(baseline.group(1)) > 0, out
    ratios = {
        m.group(1): (number(m.group(2)), number(m.group(3)))
        for m in re.finditer(rf"^\s+(\S+)\s+({NUMBER}) tokens/s\s+({NUMBER})x baseline$", out, re.M)
    }
    assert set(ratios) == {"sp", "mup", "alpha0.5", "completep"}, out
    for rate, ratio in ratios.values():
        assert rate > 0 and math.isfinite(ratio) and ratio > 0, out
    assert "median of 1 interleaved rounds" in out  # --quick: one round


def test_calibration_quick_reports_every_family():
    from completep_sweep.synthetic import FAMILIES

    out = run_quick("calibration.py")
    rows = [line.split(" | ") for line in out.splitlines() if line.count(" | ") == 8]
    names = [r[0] for r in rows[2:]]  # after the header and its rule
    assert names[: len(FAMILIES)] == [f.name for f in FAMILIES], out
    real = names[len(FAMILIES) :]  # real rows with a known drift injected, per parameterization
    assert len(real) == 2 and all(n.startswith("real rows") for n in real), out
    for r in rows[2:]:
        for cell in r[1:5]:  # right and wrong-firm rates ("-": no payoff world for real rows)
            assert cell == "-" or 0 <= number(cell.rstrip("%")) <= 100, out
        for cell in r[5:]:  # coverage (and the widening that would give 95%), or "-"
            assert cell == "-" or 0 <= number(cell.split("%")[0]) <= 100, out
    assert "2 studies per world" in out  # --quick
    derived = re.search(r"^derived .*: (.*)$", out, re.M)
    assert derived and derived.group(1).count("kappa_") == 4, out
    timed = re.search(rf"^report on (\d+) simulated rows: ({NUMBER}) s", out, re.M)
    assert timed and int(timed.group(1)) >= 328 and number(timed.group(2)) > 0, out


def test_gpu_check_quick_prints_its_table_and_never_a_gpu_number_without_a_gpu():
    import torch

    out = run_quick("gpu_check.py")
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| (")}
    assert list(rows) == [
        "(a) w32 d2 trial path tokens/s",
        "(a) w32 d2 model-FLOPs utilisation",
        "(b) 4 trials at 0.25 GPU",
        "(c) 2 workers against 1",
        "(d) tiny trial CPU vs GPU",
    ], out
    assert re.search(rf"plain loop {NUMBER}", rows["(a) w32 d2 trial path tokens/s"]), out
    if not torch.cuda.is_available():
        for key in list(rows)[1:]:
            assert "not measured" in rows[key], out


def test_search_cost_quick_reports_agreement_and_cost():
    out = run_quick("search_cost.py")
    m = re.search(
        rf"^synthetic, 40 shapes: same answer ({NUMBER})%, cost ({NUMBER})% of the dense grid's trials",
        out,
        re.M,
    )
    assert m, out
    percent(m.group(1))
    assert 0 < percent(m.group(2)) < 100  # a bracket never runs the whole dense grid


def test_optuna_vs_grid_quick_reports_trials_to_the_grid_best():
    out = run_quick("optuna_vs_grid.py")
    m = re.search(
        rf"^synthetic, 5 studies: within 1% of the grid's best in ({NUMBER})% of studies; "
        rf"median ({NUMBER}) trials \(90th percentile ({NUMBER})\) vs 15 grid trials$",
        out,
        re.M,
    )
    assert m, out
    percent(m.group(1))
    assert 1 <= number(m.group(2)) <= number(m.group(3)) <= 24, out


# ---------------------------------------------------------------- on real rows of the dense grid


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.toml")), ids=lambda p: p.name)
def test_benchmark_sweep_files_expand_to_the_trials_their_header_says(path):
    header = re.search(r"(\d+) trials", path.read_text().split("\nname =")[0])
    assert header, f"{path.name}: say how many trials it runs in its header comment"
    assert len(load_sweep(path).trials) == int(header.group(1))


@pytest.fixture(scope="module")
def dense_rows(tmp_path_factory, make_result) -> Path:
    """A results folder of benchmarks/dense-half-octave.toml's CompleteP depth-2 shape (45 rows, no
    training): loss a parabola in log2(lr) with its minimum at 2^-6."""
    sweep = load_sweep(BENCHMARKS / "dense-half-octave.toml")
    store = ResultStore(tmp_path_factory.mktemp("results") / sweep.name)
    store.write_spec(sweep.text)
    shape = [c for c in sweep.trials if c.parameterization == "completep" and c.depth == 2]
    assert len(shape) == 15 * 3
    for c in shape:
        loss = 3.0 + 0.05 * (math.log2(c.lr) + 6) ** 2 + 0.001 * c.seed
        store.write_result(
            make_result(**{k: v for k, v in c.to_dict().items() if k != "lr"}, lr=c.lr, final_val_loss=loss)
        )
    return store.root


def test_search_cost_quick_replays_the_bracket_on_real_rows(dense_rows):
    out = run_quick("search_cost.py", "--real", dense_rows)
    m = re.search(rf"^real trials \(.*\), 1 shapes: same answer ({NUMBER})%, cost ({NUMBER})%", out, re.M)
    assert m and percent(m.group(1)) == 100, out
    assert 0 < percent(m.group(2)) < 100
    shape = re.search(
        r"^\s+completep\s+depth\s+2: dense 2\^(\S+), bracket 2\^(\S+) \((\d+) of 45 trials\)$", out, re.M
    )
    assert shape and number(shape.group(1)) == -6 and abs(number(shape.group(2)) + 6) <= 0.5, out
    assert 0 < int(shape.group(3)) < 45


@pytest.mark.slow
def test_optuna_vs_grid_quick_runs_an_optuna_sweep(dense_rows):
    out = run_quick("optuna_vs_grid.py", "--real", dense_rows, timeout=600)
    m = re.search(
        rf"^real trials at width 32, depth 2 \(grid best ({NUMBER}) over 15 seed-0 trials\):$", out, re.M
    )
    assert m and number(m.group(1)) == pytest.approx(3.0), out
    run = re.search(
        rf"^\s+sampler seed 0: within 1% after (\S+) trials, best ({NUMBER}), {NUMBER} s for (\d+) "
        r"trials$",
        out,
        re.M,
    )
    assert run and int(run.group(3)) == 4, out  # every trial of the Optuna sweep left a row
    assert math.isfinite(number(run.group(2))) and number(run.group(2)) > 0


# ---------------------------------------------------------------- a real sweep on local Ray


@pytest.mark.slow
def test_sweep_overhead_quick_reports_the_overhead_ratio_and_expansion():
    out = run_quick("sweep_overhead.py", timeout=600)
    m = re.search(
        rf"^sweep overhead-quick: 8 trials at concurrency (\d+): wall ({NUMBER}) s, ideal .* "
        rf"({NUMBER}) s -> ({NUMBER})x",
        out,
        re.M,
    )
    assert m, out
    assert int(m.group(1)) >= 1 and number(m.group(2)) > 0 and number(m.group(3)) > 0
    assert number(m.group(4)) > 0
    e = re.search(rf"^expansion of a 10,000-trial sweep file: ({NUMBER}) s", out, re.M)
    assert e and number(e.group(1)) > 0, out


def test_decision_cost_quick_prints_cost_and_right_verdicts_per_method():
    out = run_quick("decision_cost.py", timeout=600)
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| measured |"):
            rows[cells[1]] = cells
    assert list(rows) == ["dense", "bracket", "decided", "decided, max_seeds 3", "decided, budget 25%"], out
    assert rows["dense"][3] == "100%" and int(rows["dense"][2]) == 4 * 11 * 3  # 4 depths, 11 lrs, 3 seeds
    for cells in rows.values():
        assert cells[3].endswith("%") and number(cells[3][:-1]) > 0, cells  # trial-tokens vs dense
        assert all(c.endswith("%") and 0 <= percent(c[:-1]) <= 100 for c in cells[4:]), cells
    assert number(rows["decided, budget 25%"][3][:-1]) <= 26, out  # the budget holds
    deep = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if re.match(r"^\| 0\.\d+ \| ", line)
    ]
    assert [c[0] for c in deep] == ["0.0", "0.0", "0.15", "0.15", "0.3", "0.3"], out  # with and without
    for plain, deeper in zip(deep[::2], deep[1::2]):
        assert plain[2].endswith("max_seeds 6") and deeper[2].endswith("max_depth 64"), out
        assert plain[4] == "100%" and plain[5] == "0%"  # the plain search never adds a depth
        assert number(deeper[4][:-1]) >= 100  # an added depth costs compute, never saves it
    for p in ("completep", "mup"):
        assert re.search(
            rf"^real rows, {p}, depths \[2, 4, 8, 16, 32\]: decided \d+ of 70 trials; transfer \S+ "
            r"\(dense: \S+\)",
            out,
            re.M,
        ), out
        assert re.search(rf"^real rows, {p}, depths \[2, 4, 8\], max_depth 32: added ", out, re.M), out


def test_payoff_floor_quick_reads_each_design_by_a_look_and_by_report():
    out = run_quick("payoff_floor.py")
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| measured |")
    ]
    assert [r[1].split(",")[0] for r in rows] == ["dense grid", "oracle"], out
    for cells in rows:
        look_right, look_wrong, report_right, report_wrong = (percent(c.rstrip("%")) for c in cells[2:6])
        assert look_right + look_wrong <= 100 and report_right + report_wrong <= 100, cells
    ratios = {
        m.group(1): [float(r) for r in m.group(2).split(" | ")]
        for m in re.finditer(r"^\| (half octaves|whole octaves) \| (.*) \|$", out, re.M)
    }
    assert set(ratios) == {"half octaves", "whole octaves"} and all(len(r) == 3 for r in ratios.values()), out
    independent, _, shared = ratios["half octaves"]
    assert independent < 1 < shared, out  # independent minima vary less than one value; shared ones more
    assert re.search(rf"benchmark time: {NUMBER} s", out), out
