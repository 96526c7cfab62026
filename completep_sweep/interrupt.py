"""Ctrl-C and SIGTERM as an exception, so that a command stops cleanly and says what happened.

``interruptible()`` makes SIGINT and SIGTERM raise ``Interrupted`` in the main thread; the command
unwinds (a sweep stops its trials and Ray, the MLflow tracker flushes what finished, the UI stops
its server), prints what was interrupted and how to resume, and exits 128 + the signal number:
130 for SIGINT, 143 for SIGTERM, as a shell expects. ``deferred()`` marks a block that must finish
first (a row being written; a Tune experiment, which polls ``requested()`` and ends at its next
step, since an exception raised inside Ray's C code would surface as a SystemError): a signal
arriving inside it is raised when the block ends. A second signal acts at once (SIGINT:
KeyboardInterrupt; SIGTERM: the default, immediate exit).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: list[int] = []
_depth = [0]  # nesting of deferred() blocks


class Interrupted(BaseException):
    """A stop signal. A BaseException, like KeyboardInterrupt: no library's ``except Exception``
    may swallow it on its way up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _handler(signum, frame) -> None:
    # A second signal of the same kind is not polite any more.
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    if _depth[0]:
        _pending.append(signum)
        return
    raise Interrupted(signum)


@contextmanager
def interruptible():
    """SIGINT and SIGTERM raise ``Interrupted`` inside this block (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _pending.clear()


def requested() -> bool:
    """A stop signal arrived inside a ``deferred()`` block and waits to be raised (a Tune stopper
    polls this to end the experiment at its next step)."""
    return bool(_pending)


@contextmanager
def deferred():
    """Let this block finish before a stop signal takes effect."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        if not _depth[0] and _pending:
            raise Interrupted(_pending.pop(0))


# ---------------------------------------------------------------- no process left behind


def _children_table() -> dict[int, int]:
    """pid -> parent pid of every live process (Linux /proc; empty elsewhere). Zombies are done."""
    table = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            # The command may hold spaces and parentheses: the fields after the last ')' are fixed.
            state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue
        if state not in ("Z", "X"):
            table[int(entry.name)] = int(parent)
    return table


def descendants(pid: int | None = None) -> list[int]:
    """Every live process started by ``pid`` (default: this one), children's children included."""
    table, root = _children_table(), pid or os.getpid()
    found, frontier = [], {root}
    while frontier:
        children = [p for p, parent in table.items() if parent in frontier]
        found += children
        frontier = set(children)
    return found


def reap(timeout: float = 10.0) -> list[int]:
    """Wait for the processes this one started to exit; SIGKILL those still there after ``timeout``.

    Only our own descendants, by pid. Returns the pids that had to be killed.
    """
    deadline = time.monotonic() + timeout
    while descendants() and time.monotonic() < deadline:
        time.sleep(0.2)
    stragglers = descendants()
    for pid in stragglers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return stragglers
