"""Report: figures are valid files, exports parse back, write_report writes what it says."""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from completep_sweep.analysis import analyze
from completep_sweep.answer import recommendations
from completep_sweep.fmt import records
from completep_sweep.plots import plot_coord_check, plot_lr_curves, plot_optimum_drift
from completep_sweep.report import recommendation_text, verdict_text, write_report
from completep_sweep.store import write_atomic, write_text
from completep_sweep.tables import export_table, format_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trials(make_trials) -> pd.DataFrame:
    drift = make_trials(
        lambda d, w: -6.0 - math.log2(d),
        parameterization="mup",
        lr_log2=range(-14, -2),
        seeds=(0, 1),
        noise=0.002,
        diverge_log2=-2,
        l0=lambda d, w: 5.0 - 0.1 * math.log(1e12 * d),
    )
    stable = make_trials(
        lambda d, w: -7.0,
        parameterization="completep",
        lr_log2=range(-14, -2),
        seeds=(0, 1),
        noise=0.002,
        diverge_log2=-4,
        l0=lambda d, w: 5.0 - 0.1 * math.log(1e12 * d / 0.8),
    )
    return pd.concat([drift, stable], ignore_index=True)


@pytest.fixture(scope="module")
def analysis(trials):
    return analyze(trials)


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "parameterization": ["mup", "completep", "alpha0.5"],
            "hp": ["init_std", "lr", "lr"],
            "optimum": [0.0078125, math.inf, math.nan],
            "n_seeds": [3, 1, 2],
            "at_edge": [True, False, True],
            "note": ["a, b", 'say "hi" | 50% & $x^2$ #1 {~}', ""],
        }
    )


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, path


def test_export_csv_parses_back(table):
    back = pd.read_csv(io.StringIO(export_table(table, "csv")), keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(table.columns) and len(back) == 3
    assert back["optimum"].iloc[0] == 0.0078125 and np.isinf(back["optimum"].iloc[1])
    assert math.isnan(back["optimum"].iloc[2])
    assert back["note"].iloc[1] == table["note"].iloc[1]


def test_export_json_is_strict_and_nulls_non_finite(table):
    rows = json.loads(export_table(table, "json"))
    assert len(rows) == 3 and rows[0]["optimum"] == 0.0078125
    assert rows[1]["optimum"] is None and rows[2]["optimum"] is None
    assert rows[0]["at_edge"] is True and rows[0]["n_seeds"] == 3
    json.loads(export_table(table, "json"), parse_constant=lambda c: pytest.fail(f"non-strict {c}"))


def test_export_markdown_table_shape(table):
    lines = export_table(table, "md").strip().splitlines()
    assert len(lines) == 2 + len(table)
    assert lines[0].startswith("| parameterization |")
    assert re.fullmatch(r"\|( :?-{3,}:? \|)+", lines[1])
    counts = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
    assert counts == {len(table.columns) + 1}
    assert "---:" in lines[1]  # numeric columns right-aligned


def test_export_latex_tabular(table):
    text = export_table(table, "latex").strip()
    lines = text.splitlines()
    assert lines[0] == r"\begin{tabular}{llrrll}" and lines[-1] == r"\end{tabular}"
    body = [line for line in lines[1:-1] if line != r"\hline"]
    assert len(body) == 1 + len(table)
    for line in body:
        assert line.endswith(r"\\")
        assert len(re.findall(r"(?<!\\)&", line)) == len(table.columns) - 1
    assert r"init\_std" in text and "init_std" not in text.replace(r"\_", "")
    assert r"\%" in text and r"\$" in text and r"\#" in text and r"$\infty$" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_export_latex_compiles(table, tmp_path):
    doc = "\\documentclass{article}\n\\begin{document}\n" + export_table(table, "latex") + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-2000:]


def test_export_rejects_unknown_format(table):
    with pytest.raises(ValueError, match="csv, md, latex, json"):
        export_table(table, "xlsx")


def test_format_table_aligns_columns(table):
    lines = format_table(table).splitlines()
    assert len(lines) == 2 + len(table)
    assert set(lines[1].replace(" ", "")) == {"-"}
    # Right-aligned numeric column: its cells end at the same character position.
    end = lines[0].index("optimum") + len("optimum")
    assert all(line[:end].endswith(cell) for line, cell in zip(lines[2:], ["0.007812", "inf", "-"]))
    assert format_table(table.iloc[:0]) == "(no rows)"


def test_verdict_text_states_tolerance_and_verdicts(trials, analysis):
    text = verdict_text(analysis)
    lines = text.splitlines()
    assert lines[0].startswith("Transfer: what does keeping the base optimum cost at the other shapes?")
    assert "at most 1% of loss" in lines[0] and "Depth payoff" in text and "Stability" in text
    mup = next(line for line in lines if line.startswith("µP"))  # the paper's names, in its order
    cp = next(line for line in lines if line.startswith("CompleteP"))
    assert lines.index(mup) < lines.index(cp)
    assert "re-tune" in mup and "keep" in cp and "depth=" not in mup and "width=64" in mup
    assert "at 32" in mup  # where keeping the base optimum costs most
    strict = verdict_text(analyze(trials, tolerance=0.25)).splitlines()[0]
    assert "at most 0.25% of loss" in strict


def test_recommendation_text_says_what_to_use_within_100_columns(analysis):
    text = recommendation_text(analysis, recommendations(analysis))
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100, text
    assert " ".join(lines[:2]) == (
        "What to use (95% intervals; keep = keeping the base optimum costs at most 1% of loss at every "
        "tested depth):"
    )
    blocks = re.split(r"\n  (?=\S)", text)[1:]  # one per parameterization: its sentence, then details
    mup = " ".join(next(b for b in blocks if b.startswith("µP:")).split())
    cp = " ".join(next(b for b in blocks if b.startswith("CompleteP:")).split())
    assert mup.startswith("µP: re-tune lr with depth") and ": re-tune (worst regret" in mup, mup
    assert "at depth 32" in mup and ": keep (worst regret" in cp, cp
    kept = re.search(r"CompleteP: keep lr = 2\^(-[\d.]+) at any tested depth", cp)
    assert kept and abs(float(kept.group(1)) + 7) < 0.1, text


def test_plots_write_valid_png_and_svg(trials, analysis, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    curves = plot_lr_curves(analysis, tmp_path / "curves", hp="lr", axis="depth")
    drift = plot_optimum_drift(analysis, tmp_path / "drift", hp="lr", axis="depth")
    for paths in (curves, drift):
        assert [p.suffix for p in paths] == [".png", ".svg"]
        assert_png(paths[0])
        assert "<svg" in paths[1].read_text()[:2000]
    assert plt.get_fignums() == before  # no pyplot state created or leaked
    with pytest.raises(ValueError, match="axis"):
        plot_optimum_drift(analysis, tmp_path / "bad", axis="heads")


def test_lr_curve_title_says_what_is_fixed(trials, analysis, tmp_path):
    plot_lr_curves(analysis, tmp_path / "curves")
    svg = (tmp_path / "curves.svg").read_text()
    # matplotlib writes text as glyph paths, with the string kept in a comment.
    assert "final val loss vs log2(lr)" in svg and "width 64" in svg
    assert "init_std 0.02" in svg and "600 steps" in svg


def test_coord_check_plot(tmp_path):
    rows = [
        {
            "parameterization": p,
            "axis": axis,
            "value": v,
            "step": step,
            "site": site,
            "mean_abs": (v if p == "mup" and site == "residual" and step else 1.0) * (1 + step / 10),
        }
        for p in ("mup", "completep")
        for axis in ("depth", "width")
        for v in (2, 4, 8, 16)
        for step in (0, 10)
        for site in ("embedding", "block0.attn", "residual", "logits")
    ]
    paths = plot_coord_check(pd.DataFrame(rows), tmp_path / "coord")
    assert_png(paths[0])
    assert paths[1].stat().st_size > 0
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # titles as text, to read their order
        svg = plot_coord_check(pd.DataFrame(rows), tmp_path / "coord_text").svg
    assert svg.index("µP: vs depth") < svg.index("CompleteP: vs depth")  # the paper's order and names
    assert "mup:" not in svg


def test_write_report_writes_what_it_says(trials, analysis, tmp_path):
    out = tmp_path / "report"
    written = write_report(analysis, out)
    names = set(written)
    assert {
        "optima.csv",
        "optima.md",
        "transfer.csv",
        "regret.csv",
        "savings.csv",
        "verdict.json",
        "curves_lr_vs_depth.png",
        "drift_lr_vs_depth.png",
        "curves_lr_vs_depth.svg",
    } <= names
    assert not any("width" in n for n in names)  # one width: no width plots
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # nothing else, no temp files
    for name, path in written.items():
        assert path.parent == out and path.stat().st_size > 0
        if name.endswith(".png"):
            assert_png(path)
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict.pop("recommendations") == json.loads(json.dumps(records(recommendations(analysis))))
    assert verdict == json.loads(json.dumps(analysis.to_json_dict()))
    optima = pd.read_csv(out / "optima.csv")
    assert len(optima) == len(analysis.optima) and set(optima["hp"]) == {"lr"}
    savings = pd.read_csv(out / "savings.csv", keep_default_na=False)
    assert savings.set_index("parameterization").loc["completep", "flops_saving_percent"] == pytest.approx(
        20, abs=2
    )


def test_write_report_skips_empty_savings(tmp_path, make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8))
    written = write_report(analyze(df), tmp_path)
    assert "savings.csv" not in written and "verdict.json" in written


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.txt"

    def boom(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, boom)  # what every report file goes through
    assert list(tmp_path.iterdir()) == []
    write_text(target, "ok\n")
    assert target.read_text() == "ok\n" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


@pytest.mark.filterwarnings("error")
def test_plots_handle_a_zero_grid_value(tmp_path, make_trials):
    parts = []
    for wd, penalty in ((0.0, 0.0), (1e-4, 0.01), (1e-3, 0.02)):
        t = make_trials(
            lambda d, w: -7.0,
            depths=(2, 4, 8),
            lr_log2=range(-9, -4),
            l0=lambda d, w, p=penalty: 3.0 + p,
            extra={"weight_decay": wd},
        )
        t["trial_id"] += f"-{wd}"
        parts.append(t)
    df = pd.concat(parts, ignore_index=True)
    written = write_report(analyze(df), tmp_path)
    assert_png(written["curves_weight_decay_vs_depth.png"])
    assert "weight_decay=0" in written["curves_weight_decay_vs_depth.svg"].read_text()
