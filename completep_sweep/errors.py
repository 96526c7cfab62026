"""The user-facing input errors, declared once. The CLI turns each into one line and exit 2.

- ``FieldError``: a bad setting of one field. ``ConfigError`` (trial.py), ``ShapeError`` (shape.py)
  and ``DataError`` (data.py) are subclasses, so ``except FieldError`` catches them all and each
  still reads as what it is.
- ``SpecError``: a bad sweep file or model preset, its message already saying where (the sweep
  file's key path, or the preset's file) and the fix.
No imports: every module may use them without a cycle.
"""

from __future__ import annotations


class FieldError(ValueError):
    """A bad setting: ``field`` names it (so callers can say where it was set), ``message`` says the fix.

    ``str(error)`` is the message alone, as for any ValueError.
    """

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message

    def __reduce__(self):
        # Rebuilt from both arguments, so the error survives pickling (e.g. raised in a Ray worker).
        return type(self), (self.field, self.message)


class SpecError(ValueError):
    """Bad sweep file or preset; the message names the field and the fix."""
