"""What each MLflow run of a sweep holds: names, params, tags and metrics of the parent, the
children (one per trial) and the experiment's note, as pure functions of rows and the sweep file."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from ..fmt import pow2
from ..sweep import SpecError, read_spec, spec_hash
from ..trial import Role, fields_with

# Every child shows what identifies its trial; any other config field that varies in the sweep is
# added, and what all trials share is a param of the parent (the sweep file's settings).
CHILD_PARAMS = (
    *fields_with(Role.PARAMETERIZATION, Role.SHAPE, Role.BASE_SHAPE, Role.SEED),
    "alpha",
    "tokens",
)
VARYING_CANDIDATES = fields_with(Role.MODEL, Role.DERIVED, Role.HP, Role.TRAINING, Role.MEASUREMENT)
SCALAR_METRICS = ("final_train_loss", "final_val_loss", "wall_time_s", "flops", "diverged_at_step")
CURVE_METRICS = ("train_loss", "val_loss")
# MLflow 3's UI opens experiments of unknown kind on its GenAI (traces) pages; this kind opens the runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def spec_settings(text: str | None, source: str) -> tuple[dict[str, str], str, str, list[str]]:
    """(settings as params, description, hash, grid axes) of the recorded sweep file; empty if none."""
    if text is None:
        return {}, "", "", []
    try:
        spec = read_spec(text, source)
    except SpecError:  # a file an older release accepted: the rows still sync, the parent gets no params
        return {}, "", spec_hash(text), []
    return spec.settings(), spec.description, spec_hash(text), list(spec.grid)


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def as_text(value: Any) -> str:
    return str(value) if present(value) else "none"


# ---------------------------------------------------------------- what a run should hold


def run_name(row: dict, varying: set[str]) -> str:
    name = f"{row['parameterization']} d{row['depth']} w{row['width']} lr={pow2(row['lr'])}"
    if "init_std" in varying:
        name += f" std={pow2(row['init_std'])}"
    return f"{name} s{row['seed']}"


def child_params(row: dict, varying: set[str]) -> dict[str, str]:
    keys = list(CHILD_PARAMS) + sorted(varying - set(CHILD_PARAMS))
    return {k: as_text(row.get(k)) for k in keys if k in row}


def child_tags(row: dict, parent_id: str) -> dict[str, str]:
    return {
        "trial_id": row["trial_id"],
        "mlflow.parentRunId": parent_id,
        "completep.role": "child",
        "completep.sweep": str(row["sweep"]),
        "status": str(row["status"]),
        "completep.code_version": as_text(row.get("code_version")),
    }


def scalar_metrics(row: dict) -> dict[str, float]:
    values = {k: row.get(k) for k in SCALAR_METRICS if present(row.get(k))}
    values["log2_lr"] = math.log2(row["lr"])  # MLflow's chart view: final loss vs lr, grouped by depth
    return {k: float(v) for k, v in values.items()}


def varying_columns(rows: list[dict], grid: list[str]) -> set[str]:
    """Config columns that differ between trials: the sweep file's grid axes plus what the rows show."""
    return set(grid) | {k for k in VARYING_CANDIDATES if len({as_text(r.get(k)) for r in rows}) > 1}


def start_ms(row: dict) -> int:
    try:
        return int(datetime.fromisoformat(str(row.get("started_at"))).timestamp() * 1000)
    except ValueError:
        return int(time.time() * 1000)


def experiment_note(sweep: str, description: str, verdicts: dict | None, loss: str) -> str:
    """The experiment page's description: what the sweep asks, and the report's verdicts if any."""
    lines = [
        f"**{sweep}**: {description}" if description else f"**{sweep}**",
        "",
        "Charts: the *Transfer curves* view (loss against log2 of each swept HP, one line per depth; "
        f"loss: {loss}).",
    ]
    if not verdicts:
        return "\n".join(lines + ["", "Run `completep-sweep report` for the verdicts."])
    lines += [
        "",
        "| parameterization | hp | transfer | drift (oct/doubling) | depth payoff |",
        "|---|---|---|---|---|",
    ]
    payoff = {(r["parameterization"], r["hp"]): r["verdict"] for r in verdicts.get("payoff", [])}
    for r in verdicts.get("transfer", []):
        if r.get("axis") == "depth":
            slope = r.get("slope")
            lines.append(
                f"| {r['parameterization']} | {r['hp']} | {r['verdict']} | "
                f"{'' if slope is None else f'{slope:+.2f}'} | "
                f"{payoff.get((r['parameterization'], r['hp']), '')} |"
            )
    return "\n".join(lines)
