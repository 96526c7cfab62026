"""The answer a user came for: what to use, and how sure that is.

``recommendations``: per parameterization (in the paper's order) and swept HP, the three verdicts
(transfer, depth payoff, stability), the base optimum as 2^k with its interval, the worst regret and
where, and one plain sentence. ``target``: the effective per-group HPs at a target shape, one row per
parameterization, with a warning wherever the answer is not a firm "transfers" from an interior
optimum, and ``paste_block`` the TOML and `completep-sweep trial` flags to run it.
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
    "depth_payoff",
    "stability",
    "depths",
    "sentence",
]


def _one(df: pd.DataFrame, **where) -> dict[str, Any] | None:
    for key, value in where.items():
        df = df[df[key].eq(value)]
    return df.iloc[0].to_dict() if len(df) else None


def _sentence(
    p: str,
    hp: str,
    t: dict,
    payoff: str,
    stability: dict | None,
    base: float,
    regret: dict | None,
    depths: tuple[int, int],
) -> str:
    span = f"{depths[0]}-{depths[1]}"
    verdict = t["verdict"] if t else "inconclusive"
    if verdict == "transfers":
        text = f"{name(p)}: keep {hp} = {pow2(base)} at any tested depth ({span})"
    elif verdict == "drifts":
        text = (
            f"{name(p)}: re-tune {hp} with depth: its optimum moves {t['slope']:+.2f} octave per doubling "
            f"(about {pow2(base * 2 ** (t['slope'] * math.log2(depths[1] / depths[0])))} "
            f"at depth {depths[1]})"
        )
    else:
        why = (t["next_step"] or t["reason"]) if t else "no depth line with two or more depths"
        text = f"{name(p)}: not settled whether {hp} = {pow2(base)} transfers: {why}"
    text += {
        "helps": "; deeper is better here",
        "hurts": "; deeper is worse here",
        "flat": "; depth neither helps nor hurts the loss here",
    }.get(payoff, "")
    if stability and stability["verdict"] == "falls":
        text += "; deep models tolerate less: stay below the edge the stability table gives"
    if regret and regret["regret_percent"] >= 0.5 and verdict != "transfers":
        text += f"; not re-tuning costs {regret['regret_percent']:.1f}% at depth {int(regret['depth'])}"
    return text + "."


def recommendations(analysis: Analysis) -> pd.DataFrame:
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
            base_depth = optima["base_depth"].iloc[0]
            at = optima[optima["depth"].eq(base_depth)]
            at = at if len(at) else optima.sort_values("depth").iloc[:1]
            base = at.iloc[0]
            payoff = _one(analysis.payoff, parameterization=p, hp=hp) if len(analysis.payoff) else None
            stability = (
                _one(analysis.stability, parameterization=p, hp=hp) if len(analysis.stability) else None
            )
            regret = analysis.regret[analysis.regret["parameterization"].eq(p) & analysis.regret["hp"].eq(hp)]
            worst = regret.sort_values("regret_percent").iloc[-1].to_dict() if len(regret) else None
            depths = (int(optima["depth"].min()), int(optima["depth"].max()))
            pay = payoff["verdict"] if payoff else "inconclusive"
            rows.append(
                {
                    "parameterization": p,
                    "hp": hp,
                    "verdict": t["verdict"] if t else "inconclusive",
                    "drift": t["slope"] if t else math.nan,
                    "drift_low": t["slope_low"] if t else math.nan,
                    "drift_high": t["slope_high"] if t else math.nan,
                    "tolerance": analysis.tolerance,
                    "base_optimum": base["optimum_refined"],
                    "base_low": base["interval_low"],
                    "base_high": base["interval_high"],
                    "base_depth": int(base["depth"]),
                    "max_regret_percent": worst["regret_percent"] if worst else math.nan,
                    "max_regret_low": worst["regret_low"] if worst else math.nan,
                    "max_regret_high": worst["regret_high"] if worst else math.nan,
                    "max_regret_depth": int(worst["depth"]) if worst else None,
                    "depth_payoff": pay,
                    "stability": stability["verdict"] if stability else "inconclusive",
                    "depths": f"{depths[0]}-{depths[1]}",
                    "sentence": _sentence(p, hp, t, pay, stability, base["optimum_refined"], worst, depths),
                }
            )
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
            if rec is not None and rec["verdict"] != "transfers":
                warnings.append(f"{hp} does not transfer firmly ({rec['verdict']})")
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


def paste_block(table: pd.DataFrame, model: str) -> str:
    """TOML for a sweep file and the `completep-sweep trial` flags of each row (base HPs: the tool
    applies the rules itself)."""
    parts = []
    for r in table.to_dict("records"):
        head = f"# {name(r['parameterization'])} at width {r['width']}, depth {r['depth']}"
        warn = f"\n# warning: {r['warning']}" if r["warning"] else ""
        parts.append(
            f"{head}{warn}\n"
            f'parameterizations = ["{r["parameterization"]}"]\n[grid]\nwidth = [{r["width"]}]\n'
            f"depth = [{r['depth']}]\n[model_overrides]\nbase_width = {r['base_width']}\n"
            f"base_depth = {r['base_depth']}\n[train]\nlr = {r['base_lr']!r}  # {pow2(r['base_lr'])}\n"
            f"init_std = {r['base_init_std']!r}\nweight_decay = {r['base_weight_decay']!r}\n"
            f"eps = {r['base_eps']!r}\n"
            f"# completep-sweep trial --model {model} --parameterization {r['parameterization']} "
            f"--width {r['width']} --depth {r['depth']} --base-width {r['base_width']} "
            f"--base-depth {r['base_depth']} --lr {r['base_lr']!r} --init-std {r['base_init_std']!r}\n"
        )
    return "\n".join(parts)
