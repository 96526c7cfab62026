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
    try:
        while True:
            results = open_results(store)  # once per tick
            text, finished = _status_text(results, recent=8), _search_finished(results)
            print(
                clear + text + ("" if finished else f"\n(every {args.interval:g}s; Ctrl-C to stop watching)"),
                flush=True,
            )
            if finished:
                return EXIT_OK
            time.sleep(args.interval)
    except (Interrupted, KeyboardInterrupt):
        return EXIT_OK  # stopping the watch is how it ends; nothing is running here


def _search_finished(results) -> bool:
    return results.plan is not None and results.plan.finished and not results.store.read_live()


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
