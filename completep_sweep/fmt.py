"""How numbers and trials read, everywhere the tool prints or serialises them (one place each)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def duration(seconds: float) -> str:
    """'42s', '3m05s', '2h07m': progress lines, estimates and summaries all read the same."""
    seconds = int(round(max(0.0, seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def pow2(x: float) -> str:
    """An HP value as the grids write it: 2^-7 and 2^-7.5 for (half-)octaves, 2^-7.31 between them
    (a fitted optimum); 0 and non-numbers as they are."""
    e = math.log2(x) if isinstance(x, (int, float, np.floating)) and x > 0 else math.nan
    if not math.isfinite(e):
        return f"{x:.3g}" if isinstance(x, (int, float, np.floating)) else str(x)
    return f"2^{e:g}" if (2 * e).is_integer() else f"2^{e:.2f}"


def describe(trial: Mapping[str, Any] | Any) -> str:
    """One line per trial: 'completep w64 d8 lr=2^-7 seed 0' (a config, or a row dict)."""
    get = trial.get if isinstance(trial, Mapping) else lambda k: getattr(trial, k)
    return (
        f"{get('parameterization')} w{get('width')} d{get('depth')} lr={pow2(get('lr'))} seed {get('seed')}"
    )


def json_value(v: Any) -> Any:
    """A plain JSON value: numpy scalars unwrapped, NaN/inf/NA → None, tuples → lists."""
    if isinstance(v, Mapping):
        return {str(k): json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [json_value(x) for x in v]
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v if isinstance(v, str) else str(v)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame → list of JSON-ready dicts (see ``json_value``)."""
    return [json_value(row) for row in df.to_dict("records")]
