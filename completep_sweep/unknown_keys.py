"""An unknown key in a sweep file, named with its close match and the keys allowed there.

Pydantic reports a typo twice ("parametrizations": an extra input, and "parameterizations": a field
required) and says neither what was meant nor what is allowed. ``first_error`` puts the unknown key
first and ``hint`` names the nearest allowed key and the whole list, from the models themselves.
"""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel


def _model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``path`` (None where it is a free-form table)."""
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        kinds = [field.annotation, *typing.get_args(field.annotation)]
        found = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        if found is None:
            return None
        model = found
    return model


def hint(error: dict, root: type[BaseModel]) -> str | None:
    """For an unknown key: "unknown key 'x' (did you mean 'y'?); allowed here: a, b, c"."""
    if error.get("type") != "extra_forbidden" or not error.get("loc"):
        return None
    *where, key = error["loc"]
    model = _model_at(root, tuple(where))
    if model is None:
        return None
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {str(key)!r}{guess}; allowed here: {', '.join(allowed)}"


def first_error(errors: list[dict], root: type[BaseModel]) -> tuple[dict, str | None]:
    """The error to report (an unknown key before the rest: a typo causes both) and its hint."""
    for error in errors:
        if (text := hint(error, root)) is not None:
            return error, text
    return errors[0], None
