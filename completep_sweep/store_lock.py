"""One driver per results folder: a flock on a local disk, a lock object with a heartbeat on
object storage.

Local: ``.driver.lock`` is held with flock; the kernel releases it when the driver dies, however it
dies. Object storage has no flock: ``.driver.lock`` is an object naming the driver (host, pid, a
random id) whose heartbeat a thread renews every HEARTBEAT_S. A lock not renewed for EXPIRY_S, or
held by a dead process on this host, is free, so a SIGKILLed driver's folder is free at once on its
own host and EXPIRY_S later elsewhere. Taking it is: read (refuse a live holder), write, wait
SETTLE_S, read back. S3 reads are strongly consistent, so of two drivers that start together only
the later writer keeps it (a driver needs milliseconds, far under SETTLE_S, between its read and its
write). The same heartbeat tells a reader on another host whether live.json's driver still runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from .store_fs import ObjectPath

HEARTBEAT_S = 20.0
EXPIRY_S = 120.0
"""A lock not renewed for this long belongs to a dead driver (clocks of the hosts within a minute)."""
SETTLE_S = 1.0
LOCK_FILE = ".driver.lock"


class LockedError(Exception):
    """Another live driver holds the results folder; the message names it."""


@contextmanager
def flock_folder(root: Path, command: str, mode: int):
    """Hold the local folder ``root`` (its ``.driver.lock``, created with ``mode``)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            raise LockedError(
                f"{root} is in use by a running driver ({holder}); wait for it to "
                "finish, or stop it (Ctrl-C, or kill PID) and run again"
            ) from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}: {command}".encode())
        except OSError:  # a full disk: leave no empty lock file behind
            if created:
                path.unlink(missing_ok=True)
            raise
        yield
    finally:
        os.close(fd)  # releases the flock


def driver_holds(folder: Path | ObjectPath) -> bool:
    """Whether a live driver holds ``folder`` now (read only: the lock is probed, never taken or
    written): a local folder's ``.driver.lock`` under another process's flock, or a lock object
    whose heartbeat is fresh. A starting ``run`` holds it before Ray starts."""
    if isinstance(folder, ObjectPath):
        return _alive(_record(folder / LOCK_FILE))
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file (never run, or not readable): no driver we can see
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases the shared probe
    return False


def live_driver(record: dict, folder: Path | ObjectPath) -> bool:
    """Whether the driver that wrote live.json (``record``) still runs: on this host its process;
    on another, for a folder on object storage, its lock's heartbeat (a local folder's is trusted)."""
    if record.get("host") == socket.gethostname():
        try:
            os.kill(int(record["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError):
            return False
        except PermissionError:
            pass  # alive, another user's
        return True
    if not isinstance(folder, ObjectPath):
        return True
    found = _record(folder / LOCK_FILE)
    return _alive(found) and found.get("pid") == record.get("pid") and found.get("host") == record.get("host")


def _record(lock: ObjectPath) -> dict | None:
    try:
        found = json.loads(lock.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:  # not a lock record: nobody's
        return None
    return found if isinstance(found, dict) else None


def _alive(found: dict | None) -> bool:
    """A live driver's lock: renewed within EXPIRY_S, and on this host its process still runs."""
    try:
        if not found or time.time() - float(found.get("updated", 0)) > EXPIRY_S:
            return False
    except (TypeError, ValueError):  # not a lock record this release wrote: nobody's
        return False
    if found.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(found["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        pass  # alive, another user's
    return True


def _held(folder: ObjectPath, found: dict) -> LockedError:
    age = time.time() - float(found.get("updated", 0))
    return LockedError(
        f"{folder} is in use by a running driver (pid {found.get('pid')} on {found.get('host')} since "
        f"{found.get('since')}: {found.get('command')}; heartbeat {age:.0f} s ago); wait for it to "
        f"finish, or stop it and run again (a driver that died on another host frees it {EXPIRY_S:.0f} s "
        "after its last heartbeat)"
    )


@contextmanager
def hold(folder: ObjectPath, command: str = ""):
    """Hold ``folder`` for this driver: its lock object, renewed by a heartbeat thread, removed at
    the end. Raises LockedError naming a live holder."""
    lock = folder / LOCK_FILE
    since = datetime.now(UTC).isoformat(timespec="seconds")
    me = {"id": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
    me["command"] = command
    found = _record(lock)
    if _alive(found):
        raise _held(folder, found)
    lock.write_bytes(json.dumps({**me, "updated": time.time()}).encode())
    time.sleep(SETTLE_S)  # a driver that read the lock free just before our write has written by now
    found = _record(lock)
    if not found or found.get("id") != me["id"]:
        raise _held(folder, found or me)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                if (_record(lock) or {}).get("id") != me["id"]:
                    return  # taken over after we missed heartbeats: never take it back
                lock.write_bytes(json.dumps({**me, "updated": time.time()}).encode())
            except OSError:
                pass  # a missed heartbeat; the next one may pass, and EXPIRY_S allows several

    thread = threading.Thread(target=beat, name="completep-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        try:
            if (_record(lock) or {}).get("id") == me["id"]:
                lock.unlink(missing_ok=True)
        except OSError:
            pass  # left behind: it expires, and on this host a dead pid frees it at once
