"""``report``, ``export``, ``sync``, ``ui``: what a sweep found, as text, files and MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import EXIT_FAILED, EXIT_OK, UsageError, resolve_results, stale_note


def _analysis(args):
    from ..analysis import analyze
    from ..results import open_results
    from ..store import ResultStore

    results = open_results(ResultStore(resolve_results(args.target, args.results)), include_stale=args.include_stale)
    if results.rows.empty:
        raise UsageError(f"RESULTS_DIR: {results.store.root} has no trial rows of the current sweep yet; run "
                         "`completep-sweep run SPEC` first" + stale_note(results))
    return results, analyze(results.rows, tolerance_octaves=args.tolerance, loss=args.loss)


SHOWN_OPTIMA_COLUMNS = ["parameterization", "width", "depth", "hp", "optimum", "optimum_refined", "interval_low",
                        "interval_high", "loss", "at_edge", "n_seeds", "n_diverged"]


def cmd_report(args) -> int:
    from ..report import verdict_text, write_report
    from ..tables import format_table

    results, analysis = _analysis(args)
    store = results.store
    written = write_report(analysis, store.root / "report")
    if args.json:
        print(json.dumps(analysis.to_json_dict()))
    else:
        pending = f", {len(results.pending)} still pending" if results.pending else ""
        print(f"{store.root}: {len(analysis.trials)} trials{pending}{stale_note(results)}")
        print(verdict_text(analysis))
        print("\nOptimal base HPs (grid argmin; refined = parabola in log2 through its neighbours):")
        print(format_table(analysis.optima[SHOWN_OPTIMA_COLUMNS]))
        if not analysis.savings.empty:
            print("\nCompute savings (FLOPs to reach the same loss as the reference):")
            print(format_table(analysis.savings))
        plots = sorted(str(p) for p in written.values() if p.suffix == ".png")
        print(f"\nreport: {store.root / 'report'} ({len(written)} files; plots: {', '.join(plots) or 'none'})")
    if not args.no_mlflow:
        _sync_quietly(store.root, args.tracking_uri, report_dir=store.root / "report")
    return EXIT_OK


def _sync_quietly(results_dir: Path, tracking_uri: str | None, report_dir: Path | None = None) -> None:
    """Best effort: MLflow is a view of the Parquet rows, never a reason to fail."""
    from ..store import LockedError, ResultStore
    from ..tracking import TrackingError, sync

    try:
        with ResultStore(results_dir).lock(command="completep-sweep report (MLflow sync)"):
            sync(results_dir, tracking_uri, report_dir=report_dir)
    except LockedError:
        print(f"note: a sweep is running in {results_dir} and mirrors MLflow itself; run `completep-sweep sync "
              f"{results_dir}` after it ends to attach this report", file=sys.stderr)
    except (TrackingError, OSError) as e:
        print(f"warning: {e}; the report is on disk; run `completep-sweep sync {results_dir}` later", file=sys.stderr)


def cmd_export(args) -> int:
    from ..analysis import transferred_hps
    from ..store import write_text
    from ..tables import export_table

    if (args.target_width is None) != (args.target_depth is None):
        raise UsageError("--target-width and --target-depth go together; give both to transfer the base optimum")
    _, analysis = _analysis(args)
    if args.target_width is not None:
        table = transferred_hps(analysis, target_width=args.target_width, target_depth=args.target_depth)
    else:
        table = analysis.optima[SHOWN_OPTIMA_COLUMNS]
    text = export_table(table, args.format)
    if args.output:
        write_text(Path(args.output), text)
        print(f"wrote {args.output} ({len(table)} rows, {args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_sync(args) -> int:
    from ..store import LockedError, ResultStore
    from ..tracking import TrackingError, default_tracking_uri, sync

    results_dir = resolve_results(args.target, args.results)
    uri = args.tracking_uri or default_tracking_uri(results_dir.parent)
    report = results_dir / "report"
    try:
        with ResultStore(results_dir).lock(command="completep-sweep sync"):
            counts = sync(results_dir, uri, report_dir=report if report.is_dir() else None)
    except LockedError as e:
        raise UsageError(f"{e} (a running sweep mirrors MLflow itself)") from None
    except TrackingError as e:
        print(f"completep-sweep sync: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"MLflow at {uri}: {counts['created']} runs created, {counts['updated']} updated, "
          f"{counts['skipped']} already complete")
    return EXIT_OK


def cmd_ui(args) -> int:
    from ..tracking.ui import run_ui

    return run_ui(Path(args.results), port=args.port, host=args.host, tracking_uri=args.tracking_uri, sweep=args.sweep)
