"""``report``, ``export``, ``sync``, ``ui``: what a sweep found, as text, files and MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import EXIT_FAILED, EXIT_OK, UsageError, check_writable, remote_folder, resolve_results, stale_note


def _analysis(args):
    from ..analysis import analyze
    from ..results import open_results
    from ..store import ResultStore

    results = open_results(
        ResultStore(resolve_results(args.target, args.results), read_only=True),
        include_stale=args.include_stale,
    )
    if results.rows.empty:
        raise UsageError(_no_rows_message(results))
    return results, analyze(results.rows, tolerance=args.tolerance, loss=args.loss)


def _no_rows_message(results) -> str:
    """Why nothing counts: no rows at all, or rows of another version of the sweep (how many)."""
    where = results.store.location
    if results.all_rows.empty:
        return f"SWEEP: {where} has no trial rows yet; run `completep-sweep run SPEC` first"
    n, compatible = len(results.all_rows), results.n_stale_compatible
    use = (
        f"; or add --include-stale to use the {compatible} that differ only in swept values"
        if compatible
        else ""
    )
    return (
        f"SWEEP: {where} has {n} trial rows, none of the current sweep: they are of an earlier version "
        "of the sweep (its spec.toml now names other trials, so none counts); run `completep-sweep run "
        f"SPEC` to run the current sweep's trials{use}"
    )


SHOWN_OPTIMA_COLUMNS = [
    "parameterization",
    "width",
    "depth",
    "hp",
    "optimum",
    "optimum_refined",
    "interval_low",
    "interval_high",
    "loss",
    "at_edge",
    "n_seeds",
    "n_diverged",
]


def cmd_report(args) -> int:
    from ..answer import recommendations
    from ..fmt import records
    from ..report import readable_optima, recommendation_text, regret_wide, verdict_text, wrap, write_report
    from ..store_fs import push
    from ..tables import format_table

    results, analysis = _analysis(args)
    store = results.store
    recs = recommendations(analysis)
    verdicts = {"recommendations": records(recs), **analysis.to_json_dict()}
    report = store.folder / "report"  # on object storage: written in the local cache, then uploaded
    try:
        written = write_report(analysis, store.root / "report", recs, verdicts)
    except OSError as e:  # a read-only or full disk: the answer is still worth printing
        written = {}
        print(
            f"warning: report files not written to {report} ({e.strerror or e}); the "
            "answer below is complete; copy the folder somewhere writable to keep plots and tables",
            file=sys.stderr,
        )
    if written and not push(store, "report"):
        report = store.root / "report"  # kept in the cache; the warning said why
    if args.json:
        print(json.dumps(verdicts))
    else:
        pending = f", {len(results.pending)} still pending" if results.pending else ""
        print(f"{store.location}: {len(analysis.trials)} trials{pending}{stale_note(results)}\n")
        print(recommendation_text(analysis, recs))
        deepest = int(analysis.optima["depth"].max()) if len(analysis.optima) else 0
        print(
            wrap(
                f"At a depth or width you did not test: completep-sweep export {store.location} "
                f"--target-depth {4 * deepest or 64} [--format toml]",
                "  ",
                "    ",
            )
        )
        print("\n" + verdict_text(analysis))
        if not analysis.regret.empty:
            print(
                "\nRegret: extra loss at each depth from keeping the base depth's optimum, in percent of "
                "that depth's best (95% interval; gain: that depth's best loss below the base depth's):"
            )
            print(format_table(regret_wide(analysis.regret)))
        print(
            "\nOptimal base HPs per shape (refined: the shape's own best tested value, refined by the "
            "parabola through its neighbours, with its 95% interval):"
        )
        print(format_table(readable_optima(analysis.optima[SHOWN_OPTIMA_COLUMNS], analysis.hps)))
        if not analysis.savings.empty:
            print(
                "\nCompute savings (FLOPs to reach the reference's loss; n/a where a fit would extrapolate):"
            )
            print(
                format_table(
                    analysis.savings[
                        ["parameterization", "reference", "flops_saving_percent", "r2", "n_shapes", "caveat"]
                    ]
                )
            )
        local = store.root / "report"
        plots = sorted(
            str(report / p.relative_to(local).as_posix()) for p in written.values() if p.suffix == ".png"
        )
        if written:
            where = f"{report} ({len(written)} files; plots: {', '.join(plots) or 'none'})"
            print(f"\nreport: {where}")
    if (args.mlflow or args.tracking_uri) and written:  # explicit: a read command writes no store unasked
        _sync_quietly(results, args.tracking_uri, analysis, verdicts)
    return EXIT_OK


def _sync_quietly(results, tracking_uri: str | None, analysis, verdicts: dict) -> None:
    """Best effort: MLflow is a view of the Parquet rows, never a reason to fail. It gets this
    report's rows, analysis (so its curves are of ``--loss``) and verdicts: nothing is read again."""
    from ..store import LockedError
    from ..tracking import TrackingError, sync

    results_dir = results.store.location
    try:
        with results.store.lock(command="completep-sweep report (MLflow sync)"):
            sync(
                results_dir,
                tracking_uri,
                report_dir=results.store.root / "report",
                results=results,
                analysis=analysis,
                verdicts=verdicts,
            )
    except LockedError:
        print(
            f"note: a sweep is running in {results_dir} and mirrors MLflow itself; run `completep-sweep sync "
            f"{results_dir}` after it ends to attach this report",
            file=sys.stderr,
        )
    except (TrackingError, OSError) as e:
        print(
            f"warning: {e}; the report is on disk; run `completep-sweep sync {results_dir}` later",
            file=sys.stderr,
        )


def cmd_export(args) -> int:
    from ..answer import target
    from ..paste import paste_block
    from ..store import write_text
    from ..tables import export_table

    results, analysis = _analysis(args)
    if args.target_width is not None or args.target_depth is not None:
        _check_target_width(args.target_width, results.rows)
        whole = target(analysis, depth=args.target_depth, width=args.target_width)
        table = _chosen(whole, args.parameterization, paste=False)
        model = str(results.rows["model"].mode().iloc[0]) if "model" in results.rows else "tiny"
        spec = results.sweep.spec if results.sweep is not None else None
        name = results.sweep.name if results.sweep is not None else Path(str(results.store.location)).name
        pasted = _chosen(whole, args.parameterization, paste=True)
        block = paste_block(pasted, results.rows, sweep=name, model=model, spec=spec)
        if args.format == "toml":
            text = block
        elif args.format == "md":
            text = export_table(table, "md") + "\n```toml\n" + block + "```\n"
        else:
            text = export_table(table, args.format)
    else:
        if args.format == "toml":
            raise UsageError(
                "--format toml: the TOML block is for a target shape; add --target-depth D "
                "(and/or --target-width W)"
            )
        table = analysis.optima[SHOWN_OPTIMA_COLUMNS]
        if args.parameterization is not None:
            table = _chosen(table.drop_duplicates("parameterization"), args.parameterization, paste=False)
            table = analysis.optima.loc[analysis.optima["parameterization"].isin(table["parameterization"])]
            table = table[SHOWN_OPTIMA_COLUMNS]
        text = export_table(table, args.format)
    if args.output:
        try:
            write_text(Path(args.output), text)
        except OSError as e:
            raise UsageError(
                f"--output: cannot write {args.output} ({e.strerror or e}); name a file in a writable "
                "folder, or leave -o out to print to stdout"
            ) from None
        print(f"wrote {args.output} ({len(table)} rows, {args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def _check_target_width(width: int | None, rows) -> None:
    """A width the model cannot be built at (not a multiple of head_dim) is refused with the nearest
    ones it can: `trial` and `run` would refuse the pasted block."""
    if width is None or "head_dim" not in rows or rows["head_dim"].isna().all():
        return
    head = int(rows["head_dim"].mode().iloc[0])
    if width % head:
        below, above = width // head * head, (width // head + 1) * head
        nearest = f"{below} or {above}" if below else f"{above}"
        raise UsageError(
            f"--target-width {width}: the model cannot be built at that width (width must be a multiple "
            f"of head_dim {head}); use {nearest}"
        )


def _chosen(table, parameterization: str | None, *, paste: bool):
    """The target rows: --parameterization's alone, else all in the paper's order. For the paste
    block, the one it is for comes first: --parameterization, else the last in the paper's order
    (CompleteP where it was swept), then the others (the block names them)."""
    from ..parameterization import display_name, get_parameterization

    names = list(table["parameterization"])
    pick = names[-1] if parameterization is None else get_parameterization(parameterization).name
    if pick not in names:
        raise UsageError(
            f"--parameterization {parameterization}: not in this sweep's answer; use one of "
            + ", ".join(f"{n} ({display_name(n)})" for n in names)
        )
    if not paste:
        return table if parameterization is None else table[table["parameterization"].eq(pick)]
    order = [pick] + [n for n in names if n != pick]
    return table.set_index("parameterization").loc[order].reset_index()


def cmd_sync(args) -> int:
    from ..store import LockedError, ResultStore
    from ..store_fs import pull_tree
    from ..tracking import TrackingError, default_tracking_uri, sync

    store = ResultStore(resolve_results(args.target, args.results))
    uri = args.tracking_uri or default_tracking_uri(store.root.parent)  # on object storage: the cache's
    report = store.root / "report"
    if store.remote:  # the report as last uploaded, from whichever machine
        remote_folder(store.location, "SWEEP (sync records what it mirrored there)", write=True)
        pull_tree(store, "report")
    elif store.root.is_dir():
        check_writable(store.root, "SWEEP (sync records what it mirrored there)")
    try:
        with store.lock(command="completep-sweep sync"):
            counts = sync(store.location, uri, report_dir=report if report.is_dir() else None)
    except LockedError as e:
        raise UsageError(f"{e} (a running sweep mirrors MLflow itself)") from None
    except TrackingError as e:
        print(f"completep-sweep sync: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"MLflow at {uri}: {counts['created']} runs created, {counts['updated']} updated, "
        f"{counts['skipped']} already complete"
    )
    return EXIT_OK


def cmd_ui(args) -> int:
    from ..store_fs import RemoteError, cache_folder, is_uri, open_location
    from ..tracking.ui import run_ui

    _check_port(args.host, args.port)
    root = Path(args.results)
    if is_uri(args.results):  # sweeps on object storage keep MLflow's default store in the local cache
        try:
            root = cache_folder(open_location(args.results))
        except RemoteError as e:
            raise UsageError(f"--results: {e}") from None
    return run_ui(root, port=args.port, host=args.host, tracking_uri=args.tracking_uri, sweep=args.sweep)


def _check_port(host: str, port: int) -> None:
    """Bind the port once before the server starts: MLflow's own failure to bind is a traceback, and
    on a port another server holds, that server would answer our health check and pass for ours."""
    import errno
    import socket

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: not a port number; use one in 1-65535, e.g. --port 5000")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: not an address here ({e.strerror}); use 127.0.0.1") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind(address)
        except PermissionError:
            why = "ports below 1024 need root" if port < 1024 else "binding it is not permitted here"
            raise UsageError(f"--port {port}: {why}; use a port >= 1024, e.g. --port 5000") from None
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                other = port + 1 if port < 65535 else 5000
                raise UsageError(
                    f"--port {port}: already in use on {host} (another server, perhaps another "
                    f"`completep-sweep ui`); pick a free one, e.g. --port {other}"
                ) from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host}: not an address of this machine; use 127.0.0.1") from None
            raise
