"""Transfer analysis of a sweep: optimal base HPs per shape, their drift, and what not re-tuning costs.

Input is the trials DataFrame (one row per trial, the ``TrialResult.row()`` schema, deduplicated).
Pure pandas/numpy: no Ray, no MLflow, no plotting. ``analyze`` prepares the rows once
(prepare.py) and hands the result to each step: the optimum per shape (optimum.py), its drift and
verdict (transfer.py), regret and savings (regret.py). The ``Analysis`` it returns carries
everything the report draws, so report and export need nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..fmt import json_value, records
from ..parameterization import BASE_HPS
from .lines import BOOTSTRAP_SEED, N_BOOTSTRAP, SETTINGS, Settings, build_lines
from .optimum import DEFAULT_BAND_TOLERANCE, OPTIMA_COLUMNS, optima
from .prepare import KEY, Prepared, best_combo, mode, prepare, slice_table, swept_hps
from .regret import REGRET_COLUMNS, SAVINGS_COLUMNS, regret, savings, shape_losses
from .stability import stability_tables
from .transfer import DEFAULT_TOLERANCE, PAYOFF_COLUMNS, TRANSFER_COLUMNS, payoff_table, transfer_table

__all__ = [
    "Analysis",
    "analyze",
    "swept_hps",
    "KEY",
    "DEFAULT_TOLERANCE",
    "OPTIMA_COLUMNS",
    "TRANSFER_COLUMNS",
    "PAYOFF_COLUMNS",
    "REGRET_COLUMNS",
    "SAVINGS_COLUMNS",
]


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything ``analyze`` found, with the settings and data that produced it."""

    trials: pd.DataFrame
    """The rows analysed (as given)."""
    slices: dict[str, pd.DataFrame]
    """Per swept HP: the loss-vs-HP slice of every shape (seed means; see prepare.slice_table)."""
    optima: pd.DataFrame
    transfer: pd.DataFrame
    """Per line: keep / re-tune / inconclusive from the regret of keeping the base optimum (against
    ``tolerance`` percent), with the worst and deepest regret, and the drift beside it."""
    payoff: pd.DataFrame
    """Per depth line: each depth's best loss against depth, verdict (helps / hurts / flat)."""
    stability: pd.DataFrame
    """Per depth line: does the largest stable value move with depth (falls / rises / stays)."""
    stability_edges: pd.DataFrame
    """Per shape: the largest stable value of each swept HP."""
    regret: pd.DataFrame
    savings: pd.DataFrame
    base_hps: pd.DataFrame
    hps: tuple[str, ...]
    tolerance: float
    """Percent of loss that keeping the base optimum may cost at any tested shape and still 'keep'."""
    loss: str
    band_tolerance: float
    savings_reference: str
    n_error: int

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI's JSON contract; non-finite numbers become null so the output is strict JSON."""
        optima = self.optima.assign(
            interval=list(zip(self.optima["interval_low"], self.optima["interval_high"]))
        )
        transfer = self.transfer.assign(
            slope_interval=list(zip(self.transfer["slope_low"], self.transfer["slope_high"]))
        )
        return {
            "optima": records(optima),
            "transfer": records(transfer),
            "payoff": records(self.payoff),
            "stability": records(self.stability),
            "stability_edges": records(self.stability_edges),
            "regret": records(self.regret),
            "savings": records(self.savings),
            "tolerance": json_value(self.tolerance),
            "loss": self.loss,
        }


def analyze(
    trials: pd.DataFrame,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    loss: str = "final_val_loss",
    band_tolerance: float = DEFAULT_BAND_TOLERANCE,
    savings_reference: str = "mup",
    n_bootstrap: int = N_BOOTSTRAP,
    bootstrap_seed: int = BOOTSTRAP_SEED,
    settings: Settings = SETTINGS,
) -> Analysis:
    """Optima per shape; transfer, depth payoff and stability verdicts; regret; compute savings."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0 percent of loss (got {tolerance!r})")
    prep = prepare(trials, loss)
    if not prep.hps:
        raise ValueError("no swept HP: no numeric config column (lr, init_std, ...) varies in the trials")
    lines = {
        hp: build_lines(prep, hp, n_boot=n_bootstrap, seed=bootstrap_seed, settings=settings)
        for hp in prep.hps
    }
    every = [line for found in lines.values() for line in found]
    found = optima(prep, lines, band_tolerance)
    edges, stable = stability_tables(every, SETTINGS.stability_band)
    return Analysis(
        trials=trials,
        slices={hp: slice_table(prep, hp) for hp in prep.hps},
        optima=found,
        transfer=transfer_table(every, tolerance),
        payoff=payoff_table(every),
        stability=stable,
        stability_edges=edges,
        regret=regret(every),
        savings=savings(shape_losses(prep), savings_reference),
        base_hps=_base_hps(prep, found),
        hps=prep.hps,
        tolerance=tolerance,
        loss=loss,
        band_tolerance=band_tolerance,
        savings_reference=savings_reference,
        n_error=len(prep.errors),
    )


def _base_hps(prep: Prepared, optima: pd.DataFrame) -> pd.DataFrame:
    """Per parameterization: the HPs to transfer, read at the declared base shape when it was run,
    else at the run shape nearest to it in octaves. Swept HPs take their refined optimum; the
    others keep the value the trials used. Every value is a base HP (η_base, σ_base, ...)."""
    rows = []
    for p, group in optima.groupby("parameterization", sort=True):
        base_w, base_d = int(mode(group["base_width"])), int(mode(group["base_depth"]))
        distance = np.abs(np.log2(group["width"] / base_w)) + np.abs(np.log2(group["depth"] / base_d))
        at = group.loc[distance.idxmin()]
        key = (p, int(at["width"]), int(at["depth"]))
        row = {
            "parameterization": p,
            "base_width": base_w,
            "base_depth": base_d,
            "tuned_width": key[1],
            "tuned_depth": key[2],
        }
        best = best_combo(prep.rows("points", key), prep.combo)
        trials = prep.rows("trials", key)
        for hp in BASE_HPS:
            row[hp] = best[hp] if hp in best else (mode(trials[hp]) if hp in trials else math.nan)
        tuned = group[group["width"].eq(key[1]) & group["depth"].eq(key[2])]
        for r in tuned.itertuples(index=False):
            row[r.hp] = r.optimum_refined
        row["any_at_edge"] = bool(tuned["at_edge"].any())
        rows.append(row)
    return pd.DataFrame(rows)
