"""What each ``completep-sweep`` command does, given its parsed arguments (cli.py parses).

One module per group: ``tools`` (explain, trial, coord-check), ``sweeps`` (validate, run, status,
submit), ``reports`` (report, export, sync, ui). Every handler returns an exit status. Bad input
raises ``UsageError`` (or ``SpecError``, a ``FieldError``, ``ClusterError``) before anything is
written or started; the CLI turns those into one line and exit 2. Heavy modules (torch, Ray,
MLflow, matplotlib) are imported inside the handlers that need them, so ``--help`` and
``validate`` stay fast.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_RESULTS = "results"
EXIT_OK, EXIT_FAILED = 0, 1
EXIT_ENVIRONMENT = 3
"""The machine failed the command, not its input (a full disk): what finished is kept, and the
message names the command that goes on from there."""


class UsageError(Exception):
    """Bad input detected after parsing: one line, exit 2, nothing started."""


class EnvironmentFailure(Exception):
    """The environment cannot do what was asked (no space left for the results): one line, exit 3."""


def resolve_results(target: str, results_root: str) -> Path | str:
    """A results folder given as a path (results/<sweep>) or as a sweep name under ``results_root``;
    either may be a URI on object storage (s3://bucket/prefix/<sweep>, or the name and --results URI)."""
    from ..store_fs import is_uri

    path = Path(target)
    if not is_uri(target) and ((path / "trials").is_dir() or (path / "spec.toml").is_file()):
        return path
    if is_uri(target) or is_uri(results_root):
        uri = target if is_uri(target) else f"{results_root.rstrip('/')}/{target}"
        folder = remote_folder(uri, "SWEEP" if is_uri(target) else "--results")
        if (folder / "spec.toml").is_file() or (folder / "trials").is_dir():
            return str(folder)
        raise UsageError(f"SWEEP: {folder} holds no sweep (no spec.toml, no trials/)")
    named = Path(results_root) / target
    if named.is_dir():
        return named
    raise UsageError(f"SWEEP: {target!r} is neither a results folder nor a sweep name under {results_root}/")


def remote_folder(uri: str, flag: str, *, write: bool = False):
    """The folder on object storage that ``uri`` (given as ``flag``) names, reached (with ``write``:
    written to and cleaned) before anything starts; exit 2 naming the flag and the fix if not."""
    from ..store_fs import RemoteError, check, open_location

    try:
        folder = open_location(uri)
        check(folder, write=write)
    except RemoteError as e:
        raise UsageError(f"{flag}: {e}") from None
    return folder


def check_writable(folder: Path, flag: str) -> None:
    """``folder`` (named by ``flag``) must be one this process can write; checked, and nothing
    created, before anything starts: a probe file in the nearest existing ancestor, removed at once."""
    import os
    import tempfile

    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{flag}: {existing} is a file, not a folder; pass a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(
            f"{flag}: cannot write to {existing} ({e.strerror or e}); use a folder on a writable "
            "disk, or fix its permissions"
        ) from None


MIN_FREE_BYTES = 16 << 20
"""Free space ``run`` wants on the results disk before it starts: a trial's row and curve take a
few KB, the folder lock and run record less; below this the first rows would already fail."""


def check_space(folder: Path) -> None:
    """Refuse to start a run on a disk that is (nearly) full: exit 3, nothing created."""
    import shutil

    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise EnvironmentFailure(
            f"--results: {existing} has {free >> 10} KB free, under the {MIN_FREE_BYTES >> 20} MB a run "
            "needs; free space on that disk (or pass --results DIR elsewhere) and run again"
        )


def stale_note(results) -> str:
    """'; 6 stale row(s) of earlier versions ...' for status and report headers ('' when none)."""
    if not len(results.stale):
        return ""
    extra = (
        f"; --include-stale would use the {results.n_stale_compatible} compatible one(s)"
        if results.n_stale_compatible
        else ""
    )
    return f"; {len(results.stale)} stale row(s) of earlier versions of the sweep, not used{extra}"


from .check import cmd_check  # noqa: E402
from .reports import cmd_export, cmd_report, cmd_sync, cmd_ui  # noqa: E402
from .status import cmd_status  # noqa: E402
from .sweeps import cmd_run, cmd_submit, cmd_validate  # noqa: E402
from .tools import cmd_coord_check, cmd_explain, cmd_lazy_check, cmd_trial  # noqa: E402

__all__ = [
    "DEFAULT_RESULTS",
    "EXIT_OK",
    "EXIT_FAILED",
    "UsageError",
    "cmd_check",
    "cmd_coord_check",
    "cmd_explain",
    "cmd_export",
    "cmd_lazy_check",
    "cmd_report",
    "cmd_run",
    "cmd_status",
    "cmd_submit",
    "cmd_sync",
    "cmd_trial",
    "cmd_ui",
    "cmd_validate",
]
