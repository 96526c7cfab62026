"""What a finished trial counts as, declared once for the searches, the analysis and `around`.

A diverged trial is a result, never an error: it counts as an infinite loss, so a point where any
seed diverged never wins and its seed mean is infinite. An ``ok`` trial whose loss is not finite
blew up without being flagged, and counts the same. An ``error`` trial has no outcome (None): it is
not finished, and the next run computes it again.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

FINISHED = ("ok", "diverged")
"""Statuses with an outcome (an ``error`` row is retried, not counted)."""

STABLE_WITHIN = 0.04
"""A tested value is stable when every seed finished and its seed-mean loss is within this fraction
of the best one's (the bracket search's stability probe and the stability verdict share it). 4% is
above the seed-to-seed spread measured one octave above an optimum (about 0.03 nats, ~1%) and below
the jump a loss spike or a diverging seed makes (0.1-0.2 nats two octaves above)."""


def outcome(status: str | None, loss: float | None) -> float | None:
    """The loss a trial counts as: ``loss`` when ok and finite, inf when it diverged (or its loss is
    not finite), None for an error (no outcome)."""
    if status == "error":
        return None
    ok = status == "ok" and loss is not None and math.isfinite(loss)
    return float(loss) if ok else math.inf


def outcomes(status: pd.Series, loss: pd.Series) -> np.ndarray:
    """``outcome`` for columns of non-error rows, as a float array."""
    value = pd.to_numeric(loss, errors="coerce").astype(float).to_numpy()
    return np.where(status.eq("ok").to_numpy() & np.isfinite(value), value, np.inf)
