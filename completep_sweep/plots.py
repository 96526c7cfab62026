"""Figures of an ``Analysis`` and of coordinate checks, as PNG and SVG.

Figures are built on ``matplotlib.figure.Figure`` directly (never pyplot), so no global figure state
leaks between calls and nothing needs closing. Every file is written atomically (store.write_atomic),
so readers (MLflow artifact upload, a user's browser) never see half a file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .analysis import Analysis
from .parameterization import display_name as name
from .parameterization import ordered
from .store import write_atomic, write_text
from .tables import cell

FIGURE_FORMATS = ("png", "svg")
PANEL_SIZE = (4.2, 3.4)  # inches per panel


class PlotFiles(list):
    """The files a plot wrote (``stem.png``, ``stem.svg``) plus the SVG's text, rendered once: the
    report inlines it in report.html without reading the file back."""

    def __init__(self, paths: list[Path], svg: str):
        super().__init__(paths)
        self.svg = svg


def _save_figure(fig: Figure, path_stem: Path | str) -> PlotFiles:
    """``stem.png`` and ``stem.svg``; a stem given as x.png or x.svg means x (not x.png.png)."""
    stem = Path(path_stem)
    if stem.suffix.lower() in {f".{f}" for f in FIGURE_FORMATS}:
        stem = stem.with_suffix("")
    png, svg = stem.with_name(f"{stem.name}.png"), stem.with_name(f"{stem.name}.svg")
    write_atomic(png, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    text = io.StringIO()
    fig.savefig(text, format="svg", dpi=120)
    write_text(svg, text.getvalue())
    return PlotFiles([png, svg], text.getvalue())


def _panels(
    n: int, ncols: int | None = None, nrows: int = 1, sharey: bool = False
) -> tuple[Figure, np.ndarray]:
    ncols = ncols or max(n, 1)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.9), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False, sharey=sharey))
    return fig, axes


def _verdict(analysis: Analysis, p: str, hp: str, axis: str) -> str:
    t = analysis.transfer
    hit = t[t["parameterization"].eq(p) & t["hp"].eq(hp) & t["axis"].eq(axis)] if len(t) else t
    return hit["verdict"].iloc[0] if len(hit) else ""


def _other(axis: str) -> str:
    if axis not in ("depth", "width"):
        raise ValueError(f"axis must be 'depth' or 'width' (got {axis!r})")
    return "width" if axis == "depth" else "depth"


def _fixed_value(analysis: Analysis, parameterization: str, hp: str, axis: str) -> Any:
    """The other axis's value held fixed for this drift: the analysis's choice, else the mode."""
    t = analysis.transfer
    hit = t[t["parameterization"].eq(parameterization) & t["hp"].eq(hp) & t["axis"].eq(axis)]
    if len(hit):
        return hit["fixed_value"].iloc[0]
    o = analysis.optima
    return o.loc[o["parameterization"].eq(parameterization), _other(axis)].mode().iloc[0]


def _describe_fixed(lines: pd.DataFrame, trials: pd.DataFrame, hp: str, analysis: Analysis) -> str:
    """'init_std 0.02, 600 steps': the other HPs as the curves hold them."""
    parts = []
    for col in [c for c in ("lr", "init_std", *analysis.hps) if c != hp]:
        if col in lines.columns:
            values = lines[col].dropna().unique()
            parts.append(f"{col} {cell(values[0])}" if len(values) == 1 else f"{col} best per shape")
        elif col in trials.columns and trials[col].nunique() == 1:
            parts.append(f"{col} {cell(trials[col].iloc[0])}")
    parts = list(dict.fromkeys(parts))  # lr/init_std may also be among the swept HPs
    if "steps" in trials.columns and trials["steps"].nunique() == 1:
        parts.append(f"{int(trials['steps'].iloc[0])} steps")
    return ", ".join(parts)


def plot_lr_curves(
    analysis: Analysis, path_stem: Path | str, hp: str = "lr", axis: str = "depth"
) -> PlotFiles:
    """Loss against log2(hp): one panel per parameterization in the paper's order (verdict in the
    title), one curve per ``axis`` value in a sequential palette, a shared y axis and one legend.

    The other axis is held at the value the drift fit used. Fitted optima are stars; diverged grid
    points are 'x' markers along the top edge of the panel.
    """
    other = _other(axis)
    slices = analysis.slices[hp]
    names = ordered(slices["parameterization"])
    fig, axes = _panels(len(names), sharey=True)
    plotted, held = [], []
    finite = slices["loss"][np.isfinite(slices["loss"])]
    limits = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    handles = {}
    for ax, p in zip(axes[0], names):
        fixed = _fixed_value(analysis, p, hp, axis)
        lines = slices[slices["parameterization"].eq(p) & slices[other].eq(fixed)]
        handles.update(_draw_curves(ax, lines, analysis.optima, p, hp, axis, limits))
        verdict = _verdict(analysis, p, hp, axis)
        ax.set_title(f"{name(p)}" + (f": {verdict}" if verdict else ""))
        plotted.append(lines)
        held.append(f"{other} {fixed}")
    axes[0, 0].set_ylabel(f"{analysis.loss.replace('_', ' ')} (mean over seeds)")
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside right upper",
            fontsize=8,
            title="x: diverged\n*: fitted optimum",
            title_fontsize=7,
        )
    described = _describe_fixed(pd.concat(plotted), analysis.trials, hp, analysis) if plotted else ""
    title = ", ".join([*dict.fromkeys(held), *([described] if described else [])])
    fig.suptitle(
        _wrap(f"{analysis.loss.replace('_', ' ')} vs log2({hp}) — {title}", width=50 * max(len(names), 1))
    )
    return _save_figure(fig, path_stem)


def _log2_axis(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """log2 positions for the x axis; values ≤ 0 (e.g. weight_decay 0) have no log2, so they sit
    1.5 octaves left of the smallest positive value, labelled '<hp>=0' and set off by a dotted line."""
    positive = values[values > 0]
    zero_x = (np.log2(positive.min()) if positive.size else 0.0) - 1.5

    def position(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.where(v > 0, np.log2(np.where(v > 0, v, 1.0)), zero_x)

    position.zero_x = zero_x if (values <= 0).any() else None
    return position


def _wrap(text: str, width: int) -> str:
    """Break a title at ', ' so that 'init_std 0.02' never splits from its value."""
    lines = [""]
    for part in text.split(", "):
        if lines[-1] and len(lines[-1]) + len(part) + 2 > width:
            lines[-1] += ","
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]}, {part}" if lines[-1] else part
    return "\n".join(lines)


def _draw_curves(
    ax, lines: pd.DataFrame, optima: pd.DataFrame, p: str, hp: str, axis: str, limits: tuple[float, float]
) -> dict:
    bottom, top = limits
    pad = 0.05 * (top - bottom or 1.0)
    position = _log2_axis(lines[hp].to_numpy(float))
    values = sorted(lines[axis].unique())
    handles = {}
    for color, v in zip(_colors(len(values)), values):
        line = lines[lines[axis].eq(v)].sort_values(hp)
        ok = np.isfinite(line["loss"]).to_numpy()
        x = position(line[hp].to_numpy(float))
        (handle,) = ax.plot(x[ok], line["loss"][ok], "o-", ms=2.5, lw=1.3, color=color, alpha=0.9)
        handles[f"{axis} {v}"] = handle
        if (~ok).any():
            ax.plot(x[~ok], np.full((~ok).sum(), top + pad), "x", color=color, ms=5)
        o = optima[
            optima["parameterization"].eq(p)
            & optima["hp"].eq(hp)
            & optima[axis].eq(v)
            & optima[_other(axis)].eq(line[_other(axis)].iloc[0])
        ]
        if len(o) and not math.isnan(o["optimum_refined"].iloc[0]) and o["optimum_refined"].iloc[0] > 0:
            ax.plot(
                position(o["optimum_refined"].iloc[0]),
                o["loss"].iloc[0],
                "*",
                ms=10,
                color=color,
                markeredgecolor="black",
                markeredgewidth=0.5,
                zorder=5,
            )
    if position.zero_x is not None:
        ax.axvline(position.zero_x + 0.75, color="grey", lw=0.5, ls=":")
        ax.text(
            position.zero_x,
            0.99,
            f"{hp}=0",
            ha="center",
            va="top",
            fontsize=7,
            transform=ax.get_xaxis_transform(),
        )
    ax.set_ylim(bottom - pad, top + 2 * pad)
    ax.set_xlabel(f"log2({hp})")
    ax.grid(alpha=0.3)
    return handles


def _colors(n: int) -> list:
    """Light to dark (shallow to deep), every shade readable on white: viridis without its yellow."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.78 - 0.72 * i / max(n - 1, 1)) for i in range(n)]


def plot_optimum_drift(
    analysis: Analysis, path_stem: Path | str, hp: str = "lr", axis: str = "depth"
) -> PlotFiles:
    """Fitted optimum against ``axis``, one panel per parameterization (paper order, shared y): the
    per-shape optima with 95% intervals (hollow: on the edge of the tested values, only a bound),
    the drift line fitted through them, and the base optimum kept flat (what "keep" keeps)."""
    other = _other(axis)
    o = analysis.optima[analysis.optima["hp"].eq(hp)]
    names = ordered(o["parameterization"])
    fig, axes = _panels(len(names), sharey=True)
    for ax, p in zip(axes[0], names):
        fixed = _fixed_value(analysis, p, hp, axis)
        rows = o[o["parameterization"].eq(p) & o[other].eq(fixed)].sort_values(axis)
        rows = rows[np.isfinite(rows["optimum_refined"]) & (rows["optimum_refined"] > 0)]
        t = analysis.transfer
        hit = t[t["parameterization"].eq(p) & t["hp"].eq(hp) & t["axis"].eq(axis)] if len(t) else t
        if len(hit) and np.isfinite(hit["line_at_base"].iloc[0]):
            r = hit.iloc[0]
            grid = np.geomspace(rows[axis].min(), rows[axis].max(), 50) if len(rows) else np.array([1.0])
            doublings = np.log2(grid / r["base_axis_value"])
            at_base = r["line_at_base"]  # least squares through the shapes' optima
            ax.axhline(2.0 ** r["base_optimum"], color="0.6", ls=":", lw=1, label="base optimum, kept")
            ax.plot(
                grid,
                2 ** (at_base + r["slope"] * doublings),
                "-",
                color="C3",
                lw=1.2,
                label=f"fitted drift: {r['slope']:+.2f} oct/doubling",
            )
        if len(rows):
            y = rows["optimum_refined"].to_numpy(float)
            low = np.nan_to_num(y - rows["interval_low"].to_numpy(float), nan=0.0)
            high = np.nan_to_num(rows["interval_high"].to_numpy(float) - y, nan=0.0)
            edge = rows["at_edge"].astype(bool).to_numpy()
            ax.errorbar(rows[axis], y, yerr=[low, high], fmt="none", ecolor="C0", capsize=3)
            ax.plot(rows[axis][~edge], y[~edge], "o", color="C0", label="optimum, 95% interval")
            if edge.any():
                ax.plot(
                    rows[axis][edge], y[edge], "o", mfc="white", color="C0", label="at a grid edge (bound)"
                )
        verdict = _verdict(analysis, p, hp, axis)
        ax.set_title(f"{name(p)}" + (f": {verdict}" if verdict else "") + f" ({other} {fixed})", fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(axis)
        ax.grid(alpha=0.3, which="both")
        _legend(ax, fontsize=6, loc="best")
    axes[0, 0].set_ylabel(f"optimal {hp}")
    fig.suptitle(
        f"optimal {hp} vs {axis}: each shape's own optimum; the verdict is the regret of keeping the base's"
    )
    return _save_figure(fig, path_stem)


def plot_depth_payoff(analysis: Analysis, path_stem: Path | str, hp: str = "lr") -> PlotFiles:
    """Best loss (at each depth's own optimum) against depth, one line per parameterization, with the
    fitted payoff slope: the paper's 'does depth pay' picture (CompleteP's loss falls with depth)."""
    o = analysis.optima[analysis.optima["hp"].eq(hp)]
    pay = analysis.payoff[analysis.payoff["hp"].eq(hp)] if len(analysis.payoff) else analysis.payoff
    fig, axes = _panels(1)
    ax = axes[0, 0]
    for i, p in enumerate(ordered(o["parameterization"])):
        fixed = _fixed_value(analysis, p, hp, "depth")
        rows = o[o["parameterization"].eq(p) & o["width"].eq(fixed)].sort_values("depth")
        hit = pay[pay["parameterization"].eq(p)] if len(pay) else pay
        label = name(p) + (
            f": {hit['verdict'].iloc[0]} ({hit['slope'].iloc[0]:+.3f} nats/doubling)" if len(hit) else ""
        )
        ax.plot(rows["depth"], rows["loss"], "o-", color=f"C{i}", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth")
    ax.set_ylabel(f"best {analysis.loss.replace('_', ' ')}")
    ax.set_title(f"depth payoff: best loss vs depth\n({hp} tuned at each depth)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=7)
    return _save_figure(fig, path_stem)


def _legend(ax, **kw) -> None:
    """A legend only when something is labelled (matplotlib warns on an empty one)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def plot_coord_check(df: pd.DataFrame, path_stem: Path | str) -> PlotFiles:
    """Coordinate check: mean |x| of the residual stream (step 0 and last step) and of the logits
    (last step) against depth or width, log-log; one panel per parameterization (a row per axis)."""
    names = ordered(df["parameterization"].unique())  # the paper's order, as every other plot
    axes_present = [a for a in ("depth", "width") if (df["axis"] == a).any()]
    fig, axes = _panels(len(names), ncols=len(names), nrows=len(axes_present))
    for r, axis in enumerate(axes_present):
        for c, p in enumerate(names):
            _draw_coord_panel(axes[r, c], df[df["parameterization"].eq(p) & df["axis"].eq(axis)])
            axes[r, c].set_title(f"{name(p)}: vs {axis}")
            axes[r, c].set_xlabel(axis)
    fig.suptitle("coordinate check: mean |x| (flat = stable)")
    return _save_figure(fig, path_stem)


def _draw_coord_panel(ax, d: pd.DataFrame) -> None:
    if d.empty:
        ax.set_visible(False)
        return
    last = d["step"].max()
    for site, step, style in (("residual", 0, "o--"), ("residual", last, "o-"), ("logits", last, "s:")):
        s = d[d["site"].eq(site) & d["step"].eq(step)].groupby("value")["mean_abs"].mean()
        if len(s):
            ax.plot(s.index, s.to_numpy(), style, ms=4, label=f"{site}, step {step}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_ylabel("mean |x|")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=7)
