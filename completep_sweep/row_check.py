"""Is a stored row what its name says? Its columns' types, and its id re-derived from its config.

A trial row is trusted by its ``trial_id``: resume skips it, the analysis reads it. A row whose loss
was stored as text would crash every reader; a row whose ``lr`` was edited under the same id would
silently move an optimum. So every row read in full is checked here, and one that fails is not
used (``run`` moves it to quarantine/ and computes the trial again; read commands skip it and say
so). Rows of earlier releases pass: the id derivation keeps their hashes (``TrialConfig.trial_id``).
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from .errors import FieldError
from .trial import ROW_COLUMNS, TrialConfig

_KIND = {
    float: (pa.types.is_floating, pa.types.is_integer),
    int: (pa.types.is_integer,),
    str: (pa.types.is_string, pa.types.is_large_string),
    bool: (pa.types.is_boolean,),
}
_NAMES = {float: "a number", int: "an integer", str: "text", bool: "true/false"}


def wrong_types(schema: pa.Schema) -> str | None:
    """Why ``schema`` cannot hold trial rows (a known column of another type), or None."""
    for name in schema.names:
        kind = ROW_COLUMNS.get(name)
        if kind is None:
            continue
        t = schema.field(name).type
        if not (pa.types.is_null(t) or any(test(t) for test in _KIND[kind])):
            return f"column {name} holds {t}, not {_NAMES[kind]}"
    return None


def id_mismatch(row: pd.Series) -> str | None:
    """Why ``row``'s trial_id is not the id of its own config (an edited row), or None."""
    try:
        derived = TrialConfig.from_row(row.to_dict()).trial_id
    except (FieldError, TypeError, ValueError) as e:
        return f"its config does not read ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if derived != row["trial_id"]:
        return (
            f"its config hashes to {derived}, not to its trial_id (a value was edited after the run; "
            "an edited row would move an optimum silently)"
        )
    return None
