"""The report of a sweep: the terminal text of its verdicts, and the report folder (plots, tables).

``write_report(analysis, out)`` needs nothing but the ``Analysis``; every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .analysis import Analysis
from .plots import plot_lr_curves, plot_optimum_drift
from .store import write_text
from .tables import cell, export_table, format_table


def verdict_text(analysis: Analysis) -> str:
    """The transfer verdicts as printed by ``completep-sweep report``, tolerance stated."""
    head = (f"Transfer verdicts: does the optimum move more than ±{analysis.tolerance_octaves:g} "
            f"octave over the tested range? (loss: {analysis.loss})")
    t = analysis.transfer
    if t.empty:
        return head + "\n(no depth or width axis with two or more shapes)"
    table = pd.DataFrame({
        "parameterization": t["parameterization"], "hp": t["hp"], "axis": t["axis"],
        "at": [f"{a}={cell(v)}" for a, v in zip(t["fixed_axis"], t["fixed_value"])],
        "slope": t["slope"],
        "slope 95%": [f"[{cell(lo, 3)}, {cell(hi, 3)}]" for lo, hi in zip(t["slope_low"], t["slope_high"])],
        "shift (oct)": t["shift_octaves"], "shapes": t["n_shapes"], "verdict": t["verdict"],
        "reason": t["reason"],
    })
    return head + "\n" + format_table(table)


def _axes_with_shapes(analysis: Analysis, hp: str) -> list[str]:
    o = analysis.optima[analysis.optima["hp"].eq(hp)]
    return [a for a in ("depth", "width") if o.groupby("parameterization")[a].nunique().max() >= 2]


def write_report(analysis: Analysis, out_dir: Path | str) -> dict[str, Path]:
    """Write plots and tables into ``out_dir``; return {file name: path} of everything written.

    Plots: ``curves_<hp>_vs_<axis>`` and ``drift_<hp>_vs_<axis>`` (PNG and SVG) for every swept HP
    and every axis with at least two values. Tables: optima.csv/.md, transfer.csv, regret.csv,
    savings.csv (when non-empty), verdict.json (= ``analysis.to_json_dict()``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for hp in analysis.hps:
        for axis in _axes_with_shapes(analysis, hp):
            written += plot_lr_curves(analysis, out / f"curves_{hp}_vs_{axis}", hp=hp, axis=axis)
            written += plot_optimum_drift(analysis, out / f"drift_{hp}_vs_{axis}", hp=hp, axis=axis)
    tables = {"optima.csv": (analysis.optima, "csv"), "optima.md": (analysis.optima, "md"),
              "transfer.csv": (analysis.transfer, "csv"), "regret.csv": (analysis.regret, "csv")}
    if not analysis.savings.empty:
        tables["savings.csv"] = (analysis.savings, "csv")
    for name, (df, fmt) in tables.items():
        written.append(write_text(out / name, export_table(df, fmt)))
    verdict = json.dumps(analysis.to_json_dict(), indent=2, allow_nan=False) + "\n"
    written.append(write_text(out / "verdict.json", verdict))
    return {p.name: p for p in written}
