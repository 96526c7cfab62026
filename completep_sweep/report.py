"""The report of a sweep: the terminal text of its verdicts, and the report folder (plots, tables).

``write_report(analysis, out)`` needs nothing but the ``Analysis``; every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .analysis import Analysis
from .fmt import pow2
from .plots import plot_depth_payoff, plot_lr_curves, plot_optimum_drift
from .store import write_text
from .tables import cell, export_table, format_table

WIDTH = 100
"""Columns of the report's answer in a terminal (and report.html's box): it wraps there, never beyond."""


def wrap(text: str, first: str = "", rest: str = "") -> str:
    """``text`` filled to WIDTH columns, never breaking a word or a value like 2^-7.14."""
    import textwrap

    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def recommendation_text(analysis: Analysis, recs: pd.DataFrame) -> str:
    """The first screen: per parameterization and HP, what to use (its sentence first) and how sure
    that is, every line within WIDTH columns."""
    lines = [
        wrap(
            "What to use (95% intervals; keep = keeping the base optimum costs at most "
            f"{analysis.tolerance:g}% of loss at every tested depth):"
        )
    ]
    for r in recs.to_dict("records"):
        interval = (
            f" [{pow2(r['base_low'])}, {pow2(r['base_high'])}]" if r["base_low"] == r["base_low"] else ""
        )
        drift = (
            f"; drift {r['drift']:+.2f} [{r['drift_low']:+.2f}, {r['drift_high']:+.2f}] octaves per doubling"
            if r["drift_low"] == r["drift_low"]
            else ""
        )
        spread = (
            f" [{r['max_regret_low']:.1f}, {r['max_regret_high']:.1f}]"
            if r["max_regret_low"] == r["max_regret_low"]
            else ""  # one seed: no interval to give
        )
        regret = (
            f"worst regret {r['max_regret_percent']:.1f}%{spread} at depth {r['max_regret_depth']}"
            if r["max_regret_percent"] == r["max_regret_percent"]
            else "no regret measured"
        )
        lines.append(wrap(r["sentence"], "  ", "    "))
        details = (
            f"{r['hp']} = {pow2(r['base_optimum'])}{interval} at depth {r['base_depth']}: {r['verdict']} "
            f"({regret}){drift}; depth payoff {r['depth_payoff']}; stability {r['stability']}"
        )
        lines.append(wrap(details, "    ", "    "))
    return "\n".join(lines)


def verdict_text(analysis: Analysis) -> str:
    """The three questions as printed by ``completep-sweep report``, tolerances stated."""
    from .parameterization import display_name, in_paper_order

    def paper_order(df: pd.DataFrame) -> pd.DataFrame:
        df = in_paper_order(df)
        return df.assign(parameterization=df["parameterization"].map(display_name))

    tol = analysis.tolerance
    parts = [
        f"Transfer: what does keeping the base optimum cost at the other shapes? keep: at most {tol:g}% "
        f"of loss everywhere; re-tune: more at the deepest (95% intervals; loss: {analysis.loss})"
    ]
    t = paper_order(analysis.transfer)
    if t.empty:
        parts.append("(no depth or width axis with two or more shapes)")
    else:
        parts.append(
            format_table(
                pd.DataFrame(
                    {
                        "parameterization": t["parameterization"],
                        "hp": t["hp"],
                        "axis": t["axis"],
                        "at": [f"{a}={cell(v)}" for a, v in zip(t["fixed_axis"], t["fixed_value"])],
                        "worst regret %": [
                            f"{cell(e, 2)} [{cell(lo, 2)}, {cell(hi, 2)}] at {cell(w)}"
                            for e, lo, hi, w in zip(
                                t["worst_regret"],
                                t["worst_regret_low"],
                                t["worst_regret_high"],
                                t["worst_at"],
                            )
                        ],
                        "drift oct/doubling": [
                            f"{cell(b, 2)} [{cell(lo, 2)}, {cell(hi, 2)}]"
                            for b, lo, hi in zip(t["slope"], t["slope_low"], t["slope_high"])
                        ],
                        "shapes": t["n_shapes"],
                        "seeds": t["n_seeds"],
                        "verdict": t["verdict"],
                        "why / what would decide it": [n or r for r, n in zip(t["reason"], t["next_step"])],
                    }
                )
            )
        )
    for title, df, unit in (
        (
            "Depth payoff: does the best loss fall or rise with depth?",
            paper_order(analysis.payoff),
            "nats/doubling",
        ),
        (
            "Stability: does the largest stable value move with depth?",
            paper_order(analysis.stability),
            "oct/doubling",
        ),
    ):
        if df.empty:
            continue
        parts += [
            "",
            title,
            format_table(
                pd.DataFrame(
                    {
                        "parameterization": df["parameterization"],
                        "hp": df["hp"],
                        unit: df["slope"],
                        "95%": [
                            f"[{cell(lo, 2)}, {cell(hi, 2)}]"
                            for lo, hi in zip(df["slope_low"], df["slope_high"])
                        ],
                        "verdict": df["verdict"],
                        "why": df["reason"],
                    }
                )
            ),
        ]
    return "\n".join(parts)


def _axes_with_shapes(analysis: Analysis, hp: str) -> list[str]:
    o = analysis.optima[analysis.optima["hp"].eq(hp)]
    return [a for a in ("depth", "width") if o.groupby("parameterization")[a].nunique().max() >= 2]


def write_report(
    analysis: Analysis, out_dir: Path | str, recs: pd.DataFrame | None = None, verdicts: dict | None = None
) -> dict[str, Path]:
    """Write plots and tables into ``out_dir``; return {file name: path} of everything written.

    Plots: ``curves_<hp>_vs_<axis>`` and ``drift_<hp>_vs_<axis>`` (PNG and SVG) for every swept HP
    and every axis with at least two values. Tables: optima.csv/.md, transfer.csv, payoff.csv,
    stability.csv, regret.csv, savings.csv (when non-empty), verdict.json (= ``to_json_dict()``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for hp in analysis.hps:
        for axis in _axes_with_shapes(analysis, hp):
            plots.append(plot_lr_curves(analysis, out / f"curves_{hp}_vs_{axis}", hp=hp, axis=axis))
            plots.append(plot_optimum_drift(analysis, out / f"drift_{hp}_vs_{axis}", hp=hp, axis=axis))
        if len(analysis.payoff) and analysis.payoff["hp"].eq(hp).any():
            plots.append(plot_depth_payoff(analysis, out / f"payoff_{hp}_vs_depth", hp=hp))
    written: list[Path] = [path for files in plots for path in files]
    tables = {
        "optima.csv": (analysis.optima, "csv"),
        "optima.md": (analysis.optima, "md"),
        "transfer.csv": (analysis.transfer, "csv"),
        "payoff.csv": (analysis.payoff, "csv"),
        "stability.csv": (analysis.stability, "csv"),
        "regret.csv": (analysis.regret, "csv"),
    }
    if not analysis.savings.empty:
        tables["savings.csv"] = (analysis.savings, "csv")
    for name, (df, fmt) in tables.items():
        written.append(write_text(out / name, export_table(df, fmt)))
    if recs is None:
        from .answer import recommendations

        recs = recommendations(analysis)
    written.append(write_text(out / "recommendations.csv", export_table(recs, "csv")))
    if verdicts is None:
        from .fmt import records

        verdicts = {"recommendations": records(recs), **analysis.to_json_dict()}
    verdict = json.dumps(verdicts, indent=2, allow_nan=False) + "\n"
    written.append(write_text(out / "verdict.json", verdict))
    svgs = {Path(files[0]).stem: files.svg for files in plots}
    written.append(write_text(out / "report.html", report_html(analysis, recs, svgs)))
    return {p.name: p for p in written}


def report_html(analysis: Analysis, recs: pd.DataFrame, svgs: dict[str, str]) -> str:
    """One self-contained page (text, then every plot as inline SVG): MLflow's artifact viewer renders
    HTML inline, so the report reads in the browser at full resolution, zoomable, with no download."""
    from html import escape

    figures = [f"<h2>{escape(title)}</h2>\n" + text[text.find("<svg") :] for title, text in svgs.items()]
    body = "\n".join(
        [
            f"<h1>completep-sweep report (loss: {escape(analysis.loss)})</h1>",
            f"<pre>{escape(recommendation_text(analysis, recs))}</pre>",
            f"<pre>{escape(verdict_text(analysis))}</pre>",
            *figures,
        ]
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>completep-sweep report</title>'
        "<style>body{font-family:sans-serif;margin:1em}pre{font-size:12px;overflow-x:auto}"
        "svg{max-width:100%;height:auto}</style></head><body>\n" + body + "\n</body></html>\n"
    )


def regret_wide(regret):
    """One row per (parameterization, HP, width), one '1.2% [0.4, 2.0], gain 0.9%' column per depth
    (the base optimum is the base shape's own; "diverges" where keeping it diverged there)."""
    import pandas as pd

    from .parameterization import display_name, in_paper_order

    rows = []
    table = in_paper_order(regret.sort_values(["hp", "width", "depth"]))
    for (p, hp, width), g in table.groupby(["parameterization", "hp", "width"], sort=False):
        row = {"parameterization": display_name(p), "hp": hp, "width": width}
        for r in g.itertuples():
            if r.regret_percent == float("inf"):
                text = "diverges"
            elif r.regret_low == r.regret_low:
                text = f"{r.regret_percent:.1f}% [{r.regret_low:.1f}, {r.regret_high:.1f}]"
            else:
                text = f"{r.regret_percent:.1f}%"
            if r.depth != r.base_depth and r.gain_percent == r.gain_percent:
                text += f", gain {r.gain_percent:.1f}%"
            row[f"depth {r.depth}"] = text
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def readable_optima(table, hps):
    """HP values as 2^k, as the grids, plots and run names write them (CSV and JSON keep numbers)."""
    out = table.copy()
    for col in ("optimum", "optimum_refined", "interval_low", "interval_high"):
        if col in out:
            out[col] = [pow2(v) if v == v and v > 0 and h == "lr" else v for v, h in zip(out[col], out["hp"])]
    return out
