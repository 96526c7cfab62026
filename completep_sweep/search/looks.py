"""What each look of a decided search said, kept beside its rows, so a replay says it again.

A decided search plans its rounds from what its looks say (decide.py), and a look's verdicts are a
function of the rows it reads *and of the analysis that reads them*. A release that changes an
interval can say something else about the same rows; a run started before that release and
resumed after it would then plan other rounds, and the old rounds' rows would be left out of the
search (stale, never mixed in, but paid for). So each look is written to
``results/<sweep>/looks/<digest>.json``, named by the digest of the trials and losses it read: a
replay that reads the same rows takes the verdicts written there instead of asking the analysis
again, and only looks at rows never read before ask the analysis of this release.

These files are an index of the rows, like the Optuna study: one that does not read (a damaged
file) is skipped with one warning and that look asks the analysis again; one that cannot be written
(a full disk) costs only that pin, with one warning. Read commands (status, validate, report) read
the looks and write none.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable

from ..store_fs import reason

FOLDER = "looks"


def digest(hp: str, reads: list[tuple[str, float]]) -> str:
    """The name of a look: the swept HP it judged and every (trial id, loss) it read, in any order."""
    text = json.dumps([hp, sorted((tid, repr(float(loss))) for tid, loss in reads)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Looks:
    """The looks kept in ``folder`` (a local path or an object-storage path; None: none kept)."""

    def __init__(self, folder, *, read_only: bool = False):
        self.folder, self.read_only = folder, read_only
        self._kept: dict[str, dict[str, str]] | None = None
        self._warned = False

    def kept(self) -> dict[str, dict[str, str]]:
        if self._kept is None:
            self._kept = {} if self.folder is None else self._read()
        return self._kept

    def _read(self) -> dict[str, dict[str, str]]:
        out = {}
        try:
            files = [p for p in self.folder.glob("*.json") if not p.name.startswith(".")]
        except OSError as e:  # an unreachable folder: every look asks the analysis
            print(
                f"warning: the looks in {self.folder} were not listed ({reason(e)}); "
                "the analysis reads the rows",
                file=sys.stderr,
            )
            return out
        for path in sorted(files):
            try:
                record = json.loads(path.read_text())
                said = {str(k): str(v) for k, v in record["verdicts"].items()}
                if record["digest"] != path.stem:
                    raise ValueError("its digest is not its name")
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
                print(
                    f"warning: look {path} does not read ({type(e).__name__}); "
                    "the analysis reads those rows again",
                    file=sys.stderr,
                )
                continue
            out[path.stem] = said
        return out

    def say(self, hp: str, reads, judge: Callable[[], dict[str, str]], line, allowed=None) -> dict[str, str]:
        """The verdicts of the look that reads ``reads`` (trial id, loss): as kept, else ``judge()``'s
        (then kept). A kept look without a verdict ``allowed`` names, or with a value it does not
        allow (an edit, another release's word), is asked again, with a warning."""
        name = digest(hp, reads)
        kept = self.kept().get(name)
        bad = [q for q, ok in (allowed or {}).items() if kept is not None and kept.get(q) not in ok]
        if kept is not None and not bad:
            return dict(kept)
        if kept is not None:
            print(
                f"warning: look {self.folder / f'{name}.json'} has no valid {', '.join(bad)} verdict; "
                "the analysis reads those rows again",
                file=sys.stderr,
            )
        said = judge()
        self.kept()[name] = dict(said)
        if self.folder is not None and not self.read_only:
            self._write(name, hp, reads, said, line)
        return said

    def _write(self, name: str, hp: str, reads, said: dict, line) -> None:
        from .. import __version__
        from ..store import write_text

        record = {
            "digest": name,
            "hp": hp,
            "line": [v if isinstance(v, (int, float, str)) else str(v) for v in line],
            "trials": len(reads),
            "finite": sum(math.isfinite(loss) for _, loss in reads),
            "verdicts": said,
            "release": __version__,
        }
        try:
            write_text(self.folder / f"{name}.json", json.dumps(record, indent=1))
        except OSError as e:
            if not self._warned:
                print(
                    f"warning: the look {name} was not kept in {self.folder} ({reason(e)}); "
                    "the search goes on, but a later release may read those rows differently",
                    file=sys.stderr,
                )
            self._warned = True


def looks_of(folder, *, read_only: bool) -> Looks:
    """The looks of the sweep whose results folder is ``folder`` (a Path or an object-storage path;
    None: kept nowhere, every look asks the analysis)."""
    return Looks(None if folder is None else folder / FOLDER, read_only=read_only)
