"""The answer a user came for: what to use, and how sure that is.

``recommendations``: per parameterization (in the paper's order) and swept HP, the three verdicts
(transfer, depth payoff, stability), the base optimum as 2^k with its interval, the worst regret and
where, and one plain sentence. ``target``: the effective per-group HPs at a target shape, one row per
parameterization, with a warning wherever the answer is not a firm "keep" from an interior
optimum (paste.py turns that into a sweep file and a `completep-sweep trial` line).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .analysis import Analysis
from .fmt import pow2
from .parameterization import display_name as name
from .parameterization import in_paper_order, ordered, scaling_rules

RECOMMENDATION_COLUMNS = [
    "parameterization",
    "hp",
    "verdict",
    "drift",
    "drift_low",
    "drift_high",
    "tolerance",
    "base_optimum",
    "base_low",
    "base_high",
    "base_depth",
    "max_regret_percent",
    "max_regret_low",
    "max_regret_high",
    "max_regret_depth",
    "deepest_depth",
    "deepest_optimum",
    "depth_payoff",
    "stability",
    "depths",
    "sentence",
]


def _one(df: pd.DataFrame, **where) -> dict[str, Any] | None:
    for key, value in where.items():
        df = df[df[key].eq(value)]
    return df.iloc[0].to_dict() if len(df) else None


def _sentence(p: str, hp: str, t: dict | None, payoff: str, stability: dict | None, r: dict) -> str:
    span = r["depths"]
    verdict = r["verdict"]
    base = pow2(r["base_optimum"])
    if verdict == "keep":
        text = (
            f"{name(p)}: keep {hp} = {base} at any tested depth ({span}): it costs at most "
            f"{r['max_regret_high']:.1f}% of loss there (tolerance {r['tolerance']:g}%)"
        )
    elif verdict == "re-tune":
        cost = (
            "diverges"
            if math.isinf(r["max_regret_percent"])
            else f"costs {r['max_regret_percent']:.1f}% "
            f"[{r['max_regret_low']:.1f}, {r['max_regret_high']:.1f}]"
        )
        text = (
            f"{name(p)}: re-tune {hp} with depth: keeping {base} {cost} at depth {r['max_regret_depth']}; "
            f"use about {pow2(r['deepest_optimum'])} at depth {r['deepest_depth']} (its measured optimum)"
        )
        if math.isfinite(r["drift"]):
            text += f"; the optimum moves {r['drift']:+.2f} octave per doubling"
    else:
        why = (t["next_step"] or t["reason"]) if t else "no depth line with two or more depths"
        text = f"{name(p)}: not settled whether keeping {hp} = {base} is safe: {why}"
    text += {
        "helps": "; deeper is better here",
        "hurts": "; deeper is worse here",
        "flat": "; depth neither helps nor hurts the loss here",
    }.get(payoff, "")
    if stability and stability["verdict"] == "falls":
        text += "; deep models tolerate less: stay below the edge the stability table gives"
    return text + "."


def _edge(analysis: Analysis, p: str, hp: str, width, depth) -> float:
    """The largest stable value measured at one shape (NaN when unknown or only a lower bound)."""
    e = analysis.stability_edges
    if e.empty:
        return math.nan
    hit = e[e["parameterization"].eq(p) & e["hp"].eq(hp) & e["width"].eq(width) & e["depth"].eq(depth)]
    if hit.empty or bool(hit["lower_bound"].iloc[0]):
        return math.nan
    return float(hit["max_stable"].iloc[0])


def recommendations(analysis: Analysis) -> pd.DataFrame:
    """Per parameterization and HP: the verdict, the value to keep (or the deepest shape's own), the
    worst regret, the drift beside it, and a sentence. Advice never names a value above a measured
    stable edge: a "keep" whose value is above the edge at some tested depth becomes inconclusive."""
    rows = []
    transfer = (
        analysis.transfer[analysis.transfer["axis"].eq("depth")]
        if len(analysis.transfer)
        else analysis.transfer
    )
    for p in ordered(analysis.optima["parameterization"]):
        for hp in analysis.hps:
            t = _one(transfer, parameterization=p, hp=hp) if len(transfer) else None
            width = t["fixed_value"] if t else None
            optima = analysis.optima[analysis.optima["parameterization"].eq(p) & analysis.optima["hp"].eq(hp)]
            if width is not None:
                optima = optima[optima["width"].eq(width)]
            if optima.empty:
                continue
            optima = optima.sort_values("depth")
            base_depth = optima["base_depth"].iloc[0]
            at = optima[optima["depth"].eq(base_depth)]
            base = (at if len(at) else optima.iloc[:1]).iloc[0]
            deepest = optima.iloc[-1]
            payoff = _one(analysis.payoff, parameterization=p, hp=hp) if len(analysis.payoff) else None
            stability = (
                _one(analysis.stability, parameterization=p, hp=hp) if len(analysis.stability) else None
            )
            verdict = t["verdict"] if t else "inconclusive"
            keep = float(base["optimum_refined"])
            above = [
                int(o["depth"])
                for o in optima.to_dict("records")
                if keep > _edge(analysis, p, hp, o["width"], o["depth"]) * (1 + 1e-9)
            ]
            if verdict == "keep" and above:
                verdict = "inconclusive"
                t = {**t, "next_step": f"{pow2(keep)} is above the measured stable edge at depth {above[0]}"}
            depths = (int(optima["depth"].min()), int(optima["depth"].max()))
            row = {
                "parameterization": p,
                "hp": hp,
                "verdict": verdict,
                "drift": t["slope"] if t else math.nan,
                "drift_low": t["slope_low"] if t else math.nan,
                "drift_high": t["slope_high"] if t else math.nan,
                "tolerance": analysis.tolerance,
                "base_optimum": keep,
                "base_low": base["interval_low"],
                "base_high": base["interval_high"],
                "base_depth": int(base["depth"]),
                "max_regret_percent": t["worst_regret"] if t else math.nan,
                "max_regret_low": t["worst_regret_low"] if t else math.nan,
                "max_regret_high": t["worst_regret_high"] if t else math.nan,
                "max_regret_depth": t["worst_at"] if t else None,
                "deepest_depth": int(deepest["depth"]),
                "deepest_optimum": float(deepest["optimum_refined"]),
                "depth_payoff": payoff["verdict"] if payoff else "inconclusive",
                "stability": stability["verdict"] if stability else "inconclusive",
                "depths": f"{depths[0]}-{depths[1]}",
            }
            row["sentence"] = _sentence(p, hp, t, row["depth_payoff"], stability, row)
            rows.append(row)
    return pd.DataFrame(rows, columns=RECOMMENDATION_COLUMNS)


# ---------------------------------------------------------------- a target shape


def target(analysis: Analysis, *, depth: int | None = None, width: int | None = None) -> pd.DataFrame:
    """Effective HPs at the target shape (each default: the shape the base HPs were tuned at), one
    row per parameterization, with a warning where the answer is not firm."""
    recs = recommendations(analysis).set_index(["parameterization", "hp"])
    tested = analysis.optima.groupby("parameterization")["depth"].agg(["min", "max"])
    rows = []
    for b in in_paper_order(analysis.base_hps).itertuples(index=False):
        w, d = width or int(b.tuned_width), depth or int(b.tuned_depth)
        rules = scaling_rules(
            b.parameterization, width=w, depth=d, base_width=int(b.base_width), base_depth=int(b.base_depth)
        )
        groups = rules.groups
        warnings = []
        for hp in analysis.hps:
            rec = recs.loc[(b.parameterization, hp)] if (b.parameterization, hp) in recs.index else None
            if rec is not None and rec["verdict"] != "keep":
                warnings.append(f"{hp} is not a firm keep ({rec['verdict']})")
            edge = _extrapolated_edge(analysis, b.parameterization, hp, d)
            value = getattr(b, hp, math.nan)
            if math.isfinite(edge) and value > edge:
                warnings.append(
                    f"{hp} = {pow2(value)} is above the stable edge extrapolated to depth {d} ({pow2(edge)})"
                )
        if b.any_at_edge:
            warnings.append("an optimum sits on the edge of the tested values")
        low, high = tested.loc[b.parameterization]
        if not low <= d <= high:
            warnings.append(f"depth {d} is outside the tested {low}-{high}: the rules extrapolate")
        rows.append(
            {
                "parameterization": b.parameterization,
                "width": w,
                "depth": d,
                "base_width": int(b.base_width),
                "base_depth": int(b.base_depth),
                "tuned_width": int(b.tuned_width),
                "tuned_depth": int(b.tuned_depth),
                "base_lr": b.lr,
                "base_init_std": b.init_std,
                "base_weight_decay": b.weight_decay,
                "base_eps": b.eps,
                **{f"lr.{g}": b.lr * r.lr_mult for g, r in groups.items()},
                "init_std.hidden_weight": b.init_std * groups["hidden_weight"].init_std_mult,
                "init_std.embedding": b.init_std * groups["embedding"].init_std_mult,
                "weight_decay.hidden_weight": b.weight_decay * groups["hidden_weight"].weight_decay_mult,
                "weight_decay.embedding": b.weight_decay * groups["embedding"].weight_decay_mult,
                "eps.blocks": b.eps * groups["hidden_weight"].eps_mult,
                "eps.embedding": b.eps * groups["embedding"].eps_mult,
                "residual_multiplier": rules.residual_multiplier,
                "output_multiplier": rules.output_multiplier,
                "warning": "; ".join(warnings),
            }
        )
    return pd.DataFrame(rows)


def _extrapolated_edge(analysis: Analysis, p: str, hp: str, depth: int) -> float:
    """The largest stable value at ``depth``: the deepest measured edge moved by the stability slope
    (octaves per doubling); NaN without both."""
    e, st = analysis.stability_edges, analysis.stability
    if e.empty or st.empty:
        return math.nan
    e = e[e["parameterization"].eq(p) & e["hp"].eq(hp) & ~e["lower_bound"].astype(bool)].sort_values("depth")
    s = st[st["parameterization"].eq(p) & st["hp"].eq(hp)]
    if e.empty or s.empty or not math.isfinite(s["slope"].iloc[0]):
        return math.nan
    last = e.iloc[-1]
    if depth <= int(last["depth"]):
        return math.nan  # a tested depth: the advice already respects its measured edge
    return float(last["max_stable"]) * 2.0 ** (
        float(s["slope"].iloc[0]) * math.log2(depth / int(last["depth"]))
    )
