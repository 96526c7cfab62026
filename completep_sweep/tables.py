"""Tables as text: aligned for the terminal, and CSV, Markdown, LaTeX or JSON for export.

Plain string code (no tabulate or jinja2 needed); every format parses back (tested).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from .fmt import records

EXPORT_FORMATS = ("csv", "md", "latex", "json")


def cell(v: Any, digits: int = 4, nan: str = "-") -> str:
    """One cell as text: floats to ``digits`` significant digits, inf as 'inf', missing as ``nan``."""
    if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and math.isnan(v)):
        return nan
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{float(v):.{digits}g}"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(cell(x, digits, nan) for x in v) + "]"
    return str(v)


def _is_numeric_column(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def format_table(df: pd.DataFrame) -> str:
    """Plain aligned text table for the terminal (numbers right-aligned, text left-aligned)."""
    if df.empty:
        return "(no rows)"
    cells = [[cell(v) for v in row] for row in df.itertuples(index=False)]
    header = [str(c) for c in df.columns]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    right = [_is_numeric_column(df[c]) for c in df.columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, cells)])


def _latex_escape(text: str) -> str:
    special = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(special.get(ch, ch) for ch in text)


def _latex_cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and math.isinf(v):
        return r"$\infty$" if v > 0 else r"$-\infty$"
    return _latex_escape(cell(v, nan="--"))


def _markdown(df: pd.DataFrame) -> str:
    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", r"\|") for v in values) + " |"

    align = ["---:" if _is_numeric_column(df[c]) else "---" for c in df.columns]
    rows = [line([cell(v) for v in row]) for row in df.itertuples(index=False)]
    return "\n".join([line([str(c) for c in df.columns]), "| " + " | ".join(align) + " |", *rows]) + "\n"


def _latex(df: pd.DataFrame) -> str:
    spec = "".join("r" if _is_numeric_column(df[c]) else "l" for c in df.columns) or "l"
    rows = [" & ".join(_latex_cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    header = " & ".join(_latex_escape(str(c)) for c in df.columns) + r" \\"
    return (
        "\n".join(
            [
                rf"\begin{{tabular}}{{{spec}}}",
                r"\hline",
                header,
                r"\hline",
                *rows,
                r"\hline",
                r"\end{tabular}",
            ]
        )
        + "\n"
    )


def export_table(df: pd.DataFrame, fmt: str) -> str:
    """``df`` as csv | md | latex | json text (plain string code; no tabulate or jinja2 needed).

    CSV keeps full precision (pandas-readable, inf as 'inf'); Markdown and LaTeX round to 4
    significant digits; JSON is a list of records with non-finite numbers as null.
    """
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "md":
        return _markdown(df)
    if fmt == "latex":
        return _latex(df)
    if fmt == "json":
        return json.dumps(records(df), indent=2, allow_nan=False) + "\n"
    raise ValueError(f"unknown table format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")


def rules_table(rules, *, lr: float, init_std: float, weight_decay: float, eps: float) -> str:
    """``explain``: every parameter group's multipliers at a shape, and the effective values."""
    alpha = "none" if rules.alpha is None else f"{rules.alpha:g}"
    lines = [
        f"{rules.parameterization} (alpha {alpha}) at width {rules.width}, depth {rules.depth}; "
        f"base ({rules.base_width}, {rules.base_depth}): width_mult {rules.width_mult:g}, "
        f"depth_mult {rules.depth_mult:g}",
        f"residual multiplier {rules.residual_multiplier:.6g}   output (logit) multiplier "
        f"{rules.output_multiplier:.6g}",
        f"base HPs: lr {lr:g}, init_std {init_std:g}, weight_decay {weight_decay:g}, eps {eps:g}",
        "",
    ]
    header = (
        f"{'group':<14}{'init_std x':>11}{'lr x':>10}{'wd x':>8}{'eps x':>10} | "
        f"{'init_std':>10}{'lr':>11}{'wd':>9}{'eps':>10}"
    )
    lines += [header, "-" * len(header)]
    for g, r in rules.groups.items():
        init = "fixed" if r.init_std_mult is None else f"{r.init_std_mult:.4g}"
        init_eff = "fixed" if r.init_std_mult is None else f"{init_std * r.init_std_mult:.4g}"
        lines.append(
            f"{g:<14}{init:>11}{r.lr_mult:>10.4g}{r.weight_decay_mult:>8.4g}{r.eps_mult:>10.4g} | "
            f"{init_eff:>10}{lr * r.lr_mult:>11.4g}{weight_decay * r.weight_decay_mult:>9.4g}"
            f"{eps * r.eps_mult:>10.3g}"
        )
    lines.append("\nnorms start at 1, biases at 0; wd is PyTorch-AdamW style (decay = lr * wd * theta).")
    return "\n".join(lines)
