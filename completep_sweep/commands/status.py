"""``status``: counts, what is pending, and (``--watch``) the trials in flight, read from the folder."""

from __future__ import annotations

import sys
import time

from ..fmt import duration
from . import EXIT_OK, resolve_results, stale_note


def cmd_status(args) -> int:
    from ..interrupt import Interrupted
    from ..results import open_results
    from ..store import ResultStore

    store = ResultStore(resolve_results(args.target, args.results), read_only=True)
    if not args.watch:
        print(_status_text(open_results(store), recent=0))
        return EXIT_OK
    clear = "\033[H\033[J" if sys.stdout.isatty() else ""
    quiet_since = None  # when the watch first saw nothing to run and no driver
    try:
        while True:
            results = open_results(store)  # once per tick
            text, finished = _status_text(results, recent=8), _search_finished(results)
            # A `run` started just before the watch may not hold the folder yet: give it START_WAIT_S
            # from the first quiet tick (that tick always says so), then call the sweep finished.
            quiet_since = (quiet_since or time.monotonic()) if finished else None
            waiting = finished and time.monotonic() - quiet_since < START_WAIT_S
            note = f"\n(every {args.interval:g}s; Ctrl-C to stop watching)"
            if waiting:
                note = f"\n(nothing running; waiting up to {START_WAIT_S:g}s for a driver to start)"
            print(clear + text + ("" if finished and not waiting else note), flush=True)
            if finished and not waiting:
                return EXIT_OK
            time.sleep(min(args.interval, START_WAIT_S) if waiting else args.interval)
    except (Interrupted, KeyboardInterrupt):
        return EXIT_OK  # stopping the watch is how it ends; nothing is running here


START_WAIT_S = 10.0
"""How long ``status --watch`` waits for a driver before it calls a finished-looking sweep finished:
``run`` reads its file and takes the folder's lock within a few seconds of starting."""


def _search_finished(results) -> bool:
    """Nothing left to run, nothing running, and no driver holding the folder (one that is starting
    still shows the folder's previous sweep, finished)."""
    from ..store_lock import driver_holds

    store = results.store
    if results.plan is None or not results.plan.finished or store.read_live():
        return False
    return not driver_holds(store.folder)


def _status_text(results, *, recent: int) -> str:
    """Counts and what is pending; with ``recent``: the trials in flight and the latest finished."""
    import pandas as pd

    from ..fmt import describe

    store = results.store
    df = results.rows
    counts = df.status.value_counts().to_dict() if len(df) else {}
    lines = [
        f"{results.store.location}: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "error"))
        + results.progress()
        + stale_note(results)
    ]
    for line, why in getattr(results.plan, "stops", dict)().items():  # method = "decided": each line
        lines.append(f"  {' '.join(map(str, line))}: {why}")
    for row in df[df.status == "error"].head(5).to_dict("records"):
        last = row["error"].strip().splitlines()[-1] if row["error"] else ""
        lines.append(f"  error {row['trial_id']}: {describe(row)}: {last}")
    if not recent:
        return "\n".join(lines)
    live = sorted(store.read_live().values(), key=lambda t: t["started"])
    lines.append(f"running ({len(live)}):" if live else "running: none (no live driver for this folder)")
    now = time.time()
    for t in live:
        loss = f"{t['val_loss']:.4f}" if t.get("val_loss") is not None else "-"
        lines.append(
            f"  {t['trial']:<40} step {t['step']:>6}/{t['steps']:<6} val {loss:>7}  "
            f"{duration(now - t['started'])}"
        )
    if len(df):
        ended = df.assign(
            _end=pd.to_datetime(df.started_at, errors="coerce", utc=True)
            + pd.to_timedelta(df.wall_time_s.fillna(0), unit="s")
        )
        lines.append(f"latest finished ({min(recent, len(df))} of {len(df)}):")
        for row in ended.sort_values("_end", ascending=False).head(recent).to_dict("records"):
            outcome = f"val {row['final_val_loss']:.4f}" if row["status"] == "ok" else row["status"]
            lines.append(f"  {describe(row):<40} {outcome:<12} {duration(row['wall_time_s'])}")
    return "\n".join(lines)
