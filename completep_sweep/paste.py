"""The export's ready-to-paste block: one sweep file and one ``trial`` line for a target shape.

The block reproduces the tuned trials: their base HPs (the rules scale them to the target shape,
so the values are base values) and every training and model setting they ran with that differs
from the model preset's, read from the rows themselves. It is a whole sweep file with one [grid]
for one parameterization; the others are named with the flag that gives theirs.
"""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

import pandas as pd

from .fmt import pow2
from .parameterization import display_name
from .presets import MODEL_FIELDS, TRAIN_FIELDS, load_preset
from .trial import TrialConfig

HP_KEYS = {
    "lr": "base_lr",
    "init_std": "base_init_std",
    "weight_decay": "base_weight_decay",
    "eps": "base_eps",
}
"""The base HPs the answer gives (a target table's columns), written to [train]."""
ALWAYS = ("steps", "batch_size", "warmup_steps")
"""Training settings written even when the preset has the same value: the token budget the lr was
tuned for is the first thing a reader checks."""
FLAGS = {
    "init_std": "--init-std",
    "steps": "--steps",
    "warmup_steps": "--warmup-steps",
    "batch_size": "--batch-size",
    "eval_interval": "--eval-interval",
}
"""`completep-sweep trial` flags of their own; any other setting goes through ``--set KEY=VALUE``."""
NOT_SETTINGS = frozenset({"seed", "base_width", "base_depth", *HP_KEYS})


def toml_value(value: Any) -> str:
    """A TOML literal (also what ``trial --set`` parses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else repr(value))
    return json.dumps(str(value))


def _plain(value: Any) -> Any:
    """A numpy scalar from a DataFrame as the Python value TrialConfig holds."""
    return value.item() if hasattr(value, "item") else value


def tuned_settings(rows: pd.DataFrame, parameterization: str, width: int, depth: int, model: str) -> dict:
    """The settings (training and model) of ``parameterization``'s trials at the tuned shape that
    differ from the preset's (plus ``ALWAYS``), as {field: value}. A setting that varied between
    those trials takes the best trial's value."""
    preset = {**{f: getattr(TrialConfig(), f) for f in TRAIN_FIELDS | MODEL_FIELDS}, **load_preset(model)}
    mine = rows[rows["parameterization"].eq(parameterization)]
    at = mine[mine["width"].eq(width) & mine["depth"].eq(depth)]
    at = at if len(at) else mine
    if "final_val_loss" in at:
        at = at.sort_values("final_val_loss", na_position="last")
    out = {}
    for field in sorted((TRAIN_FIELDS | MODEL_FIELDS) - NOT_SETTINGS):
        if field not in at or at[field].isna().all():
            continue
        value = _plain(at[field].dropna().iloc[0])
        if field in ALWAYS or value != preset.get(field):
            out[field] = value
    return out


def _ordered(settings: dict) -> list[tuple[str, Any]]:
    return sorted(
        settings.items(),
        key=lambda kv: (kv[0] not in ALWAYS, ALWAYS.index(kv[0]) if kv[0] in ALWAYS else 0, kv[0]),
    )


def paste_block(table: pd.DataFrame, rows: pd.DataFrame, *, sweep: str, model: str, spec=None) -> str:
    """The block for the first row of ``table`` (one parameterization at the target shape); ``spec``
    is the recorded sweep file (its own trainer, if any, is carried over)."""
    r = table.iloc[0].to_dict()
    p, width, depth = r["parameterization"], int(r["width"]), int(r["depth"])
    settings = tuned_settings(rows, p, int(r["tuned_width"]), int(r["tuned_depth"]), model)
    train = {k: v for k, v in settings.items() if k in TRAIN_FIELDS}
    overrides = {"base_width": int(r["base_width"]), "base_depth": int(r["base_depth"])}
    overrides.update({k: v for k, v in settings.items() if k in MODEL_FIELDS})
    hps = {hp: _plain(r[col]) for hp, col in HP_KEYS.items() if col in r and r[col] == r[col]}
    lines = [
        f"# {display_name(p)} at width {width}, depth {depth}: base HPs tuned at "
        f"width {int(r['tuned_width'])}, depth {int(r['tuned_depth'])}",
        "# (base values: the tool applies the scaling rules to the target shape itself)",
    ]
    lines += [f"# warning: {w}" for w in str(r.get("warning") or "").split("; ") if w]
    others = [q for q in table["parameterization"].iloc[1:]]
    if others:
        lines.append(
            "# also analysed: "
            + ", ".join(f"{display_name(q)} (export ... --parameterization {q})" for q in others)
        )
    name = f"{sweep}-{p}-w{width}-d{depth}"[-100:].lstrip(".-_") or "paste"
    lines += [f"name = {toml_value(name)}", f"model = {toml_value(model)}", f'parameterizations = ["{p}"]']
    if spec is not None and spec.trainer:
        lines.append(f"trainer = {toml_value(spec.trainer)}")
    if spec is not None and spec.command:
        lines.append(f"command = {json.dumps(spec.command)}")
    lines += ["", "[grid]", f"width = [{width}]", f"depth = [{depth}]", "", "[train]"]
    for hp, value in hps.items():
        lines.append(f"{hp} = {toml_value(value)}" + (f"  # {pow2(value)}" if hp == "lr" else ""))
    lines += [f"{k} = {toml_value(v)}" for k, v in _ordered(train)]
    lines += ["", "[model_overrides]"] + [f"{k} = {toml_value(v)}" for k, v in overrides.items()]
    lines += [
        "",
        "# The same trial from the command line:",
        "# " + trial_line(p, width, depth, model, hps, train, overrides, spec),
    ]
    return "\n".join(lines) + "\n"


def trial_line(p, width, depth, model, hps, train, overrides, spec) -> str:
    """The `completep-sweep trial` command that trains the pasted trial (the built-in trainer only)."""
    if spec is not None and (spec.trainer or spec.command):
        return (
            "(a trainer of your own: run this file with `completep-sweep run FILE`; "
            "`trial` trains the built-in model)"
        )
    words = ["completep-sweep trial", f"--model {model}", f"--parameterization {p}", f"--width {width}"]
    words += [
        f"--depth {depth}",
        f"--base-width {overrides['base_width']}",
        f"--base-depth {overrides['base_depth']}",
    ]
    if "lr" in hps:
        words.append(f"--lr {hps['lr']!r}")
    preset = load_preset(model)
    rest = {k: v for k, v in hps.items() if k != "lr" and (k == "init_std" or v != preset.get(k))}
    rest.update(train)
    rest.update({k: v for k, v in overrides.items() if k not in ("base_width", "base_depth")})
    words += [f"{flag} {toml_value(rest[key])}" for key, flag in FLAGS.items() if key in rest]
    for key, value in sorted(rest.items()):
        if key not in FLAGS:
            text = shlex.quote(value) if isinstance(value, str) else toml_value(value)
            words.append(f"--set {key}={text}")
    return " ".join(words)
