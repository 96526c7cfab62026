"""Sweep-side commands of ``completep-sweep``: validate, run, status, submit, report, export, sync, ui.

Each takes the parsed arguments and returns an exit status; bad input raises ``UsageError`` or
``SpecError`` before anything is written or started (the CLI turns those into exit 2).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

DEFAULT_RESULTS = "results"
EXIT_OK, EXIT_FAILED = 0, 1


class UsageError(Exception):
    """Bad input detected after parsing: one line, exit 2, nothing started."""


GFLOPS_PER_CPU = 30.0  # measured here for the tiny preset; real rows replace it once some exist


def _sweep_and_store(args):
    from .spec import load_sweep
    from .store import ResultStore

    sweep = load_sweep(args.spec)
    return sweep, ResultStore(Path(args.results) / sweep.name)


def _estimate(sweep, store, pending, concurrency: int) -> tuple[float, float, str]:
    """(FLOPs of pending trials, wall seconds, how the rate was obtained)."""
    flops = sum(t.flops for t in pending)
    done = store.load(include_errors=False)
    done = done[(done.status == "ok") & (done.wall_time_s > 0)]
    if len(done):
        rate, how = done.flops.sum() / done.wall_time_s.sum(), f"measured on {len(done)} finished trials"
    else:
        rate = GFLOPS_PER_CPU * 1e9 * sweep.spec.resources.cpus_per_trial
        how = f"assumed {GFLOPS_PER_CPU:g} GFLOP/s per CPU"
    return flops, flops / rate / max(1, concurrency), how


def _local_concurrency(sweep, max_concurrent: int | None) -> int:
    res = sweep.spec.resources
    by_cpu = max(1, int((os.cpu_count() or 1) // res.cpus_per_trial))
    return min(x for x in (by_cpu, max_concurrent or res.max_concurrent) if x)


def cmd_validate(args) -> int:
    sweep, store = _sweep_and_store(args)
    done = store.completed_ids()
    ids, pending = sweep.ids, sweep.pending(done)
    concurrency = _local_concurrency(sweep, None)
    flops, seconds, how = _estimate(sweep, store, pending, concurrency)
    spec = sweep.spec
    axes = ", ".join(f"{k} x{len(v) if isinstance(v, list) else len(v.values())}" for k, v in spec.grid.items())
    print(f"{args.spec}: valid. sweep {spec.name!r}, model {spec.model}, {len(spec.parameterizations)} parameterizations x {axes or 'no grid'}")
    print(f"  {len(ids)} trials, {len(ids & done)} done, {len(pending)} pending (results: {store.root})")
    print(f"  pending work: {flops:.3g} FLOPs, about {_human(seconds)} at {concurrency} concurrent trial(s) here ({how})")
    return EXIT_OK


def _human(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def cmd_run(args) -> int:
    sweep, store = _sweep_and_store(args)
    from .runner import init_ray, run_sweep  # Ray is imported only once the input is known to be good

    _check_reachable(args.address)
    try:
        init_ray(args.address)
    except Exception as e:  # noqa: BLE001 - any failure to reach Ray is the address's fault here
        raise UsageError(f"--address: cannot connect to Ray at {args.address or 'a new local instance'}: "
                         f"{str(e).splitlines()[0]}; pass a running cluster's address (ray://, HOST:6379 or auto)") from None
    store.write_spec(sweep.text)
    sink = _tracker(args, store)
    print(f"sweep {sweep.name}: {len(sweep.ids)} trials -> {store.root}", file=sys.stderr)
    try:
        summary = run_sweep(sweep, store, address=args.address, max_concurrent=args.max_concurrent, sink=sink)
    finally:
        if sink is not None:
            sink.close()
    print(f"sweep {sweep.name}: {summary.ran} ran ({summary.ok} ok, {summary.diverged} diverged, {summary.errored} error), "
          f"{summary.skipped} already done, {summary.wall_time_s:.0f}s; rows in {store.trials_dir}")
    if summary.errored:
        print(f"{summary.errored} trial(s) errored after retries: see the 'error' column "
              f"(completep-sweep status {store.root}); re-running retries them", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _check_reachable(address: str | None) -> None:
    """Refuse an unreachable HOST:PORT at once: Ray itself retries a dead address indefinitely."""
    if not address or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--address: {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UsageError(f"--address: nothing answers at {hostport} ({e.strerror or e}); start the cluster "
                         "(`ray start --head`) or pass its GCS address, e.g. HOST:6379") from None


def _tracker(args, store):
    """MLflow mirror of the rows, or None with --no-mlflow (rows are in Parquet regardless)."""
    if args.no_mlflow:
        return None
    from .tracking import Tracker

    return Tracker(store.root, tracking_uri=args.tracking_uri)


def _resolve_results(target: str, results_root: str) -> Path:
    path = Path(target)
    if (path / "trials").is_dir() or (path / "spec.toml").is_file():
        return path
    named = Path(results_root) / target
    if named.is_dir():
        return named
    raise UsageError(f"RESULTS_DIR_OR_NAME: {target!r} is neither a results folder nor a sweep name under {results_root}/")


def cmd_status(args) -> int:
    from .spec import parse_sweep
    from .store import ResultStore

    store = ResultStore(_resolve_results(args.target, args.results))
    df = store.load()
    counts = df.status.value_counts().to_dict() if len(df) else {}
    total = pending = None
    if store.spec_path.is_file():
        sweep = parse_sweep(store.spec_path.read_text(), source=str(store.spec_path))
        total, pending = len(sweep.ids), len(sweep.pending(store.completed_ids()))
    print(f"{store.root}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "error"))
          + ("" if total is None else f"; {pending} pending of {total}"))
    if counts.get("error"):
        for _, row in df[df.status == "error"].head(5).iterrows():
            print(f"  error {row.trial_id}: {row.parameterization} w{row.width} d{row.depth} lr={row.lr:.3g}: "
                  f"{row.error.strip().splitlines()[-1] if row.error else ''}")
    return EXIT_OK


def _use_local_auth_token() -> None:
    """Let the job client send the local Ray auth token, as `ray start` uses it for the cluster.

    Ray 2.5x+ turns token auth on for clusters started where a token exists, and ray.init() follows
    suit, but the job-submission client sends the token only when RAY_AUTH_MODE=token. Ray reads the
    mode once, at import, so this runs before Ray is imported; an explicit RAY_AUTH_MODE is respected.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"


def cmd_submit(args) -> int:
    from urllib.parse import urlsplit

    dashboard = urlsplit(args.address if "://" in args.address else f"http://{args.address}")
    if not dashboard.hostname or not dashboard.port:
        raise UsageError(f"--address: {args.address!r} is not a dashboard address like http://HOST:8265")
    _check_reachable(f"{dashboard.hostname}:{dashboard.port}")
    _use_local_auth_token()
    from .runner import submit_job, wait_for_job

    sweep, _ = _sweep_and_store(args)
    project = Path(__file__).resolve().parents[1]
    # The job's working dir is the project (code, models/, sweeps/); the sweep file travels inside it.
    staged = project / ".submit" / f"{sweep.name}-{sweep.spec_hash}.toml"
    staged.parent.mkdir(exist_ok=True)
    staged.write_text(sweep.text)
    submission_id = f"completep-{sweep.name}-{sweep.spec_hash}-{args.attempt}"
    entrypoint = (f"python -m completep_sweep.cli run {staged.relative_to(project)} "
                  f"--results {args.results} --address auto")
    if args.max_concurrent:
        entrypoint += f" --max-concurrent {args.max_concurrent}"
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI",) if k in os.environ}
    try:
        job_id, state = submit_job(address=args.address, entrypoint=entrypoint, submission_id=submission_id,
                                   working_dir=str(project), env=env)
    except RuntimeError as e:
        print(f"completep-sweep submit: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{job_id}: {state}; results on the head node under {args.results}/{sweep.name}")
    if not args.wait:
        print(f"follow:  ray job logs --follow --address {args.address} {job_id}")
        print(f"status:  ray job status --address {args.address} {job_id}")
        return EXIT_OK
    final, logs = wait_for_job(args.address, job_id)
    if final != "SUCCEEDED":
        print(f"job {job_id} ended {final}; last log lines:\n{logs}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _load_trials(results_dir: Path):
    from .store import ResultStore

    store = ResultStore(results_dir)
    trials = store.load()
    if trials.empty:
        raise UsageError(f"RESULTS_DIR: {results_dir} has no trial rows yet; run `completep-sweep run SPEC` first")
    return store, trials


def _analysis(args):
    from .analysis import analyze

    store, trials = _load_trials(_resolve_results(args.target, args.results))
    return store, trials, analyze(trials, tolerance_octaves=args.tolerance, loss=args.loss)


SHOWN_OPTIMA_COLUMNS = ["parameterization", "width", "depth", "hp", "optimum", "optimum_refined", "interval_low",
                  "interval_high", "loss", "at_edge", "n_seeds", "n_diverged"]


def cmd_report(args) -> int:
    import json

    from .report import format_table, verdict_text, write_report

    store, trials, analysis = _analysis(args)
    written = write_report(trials, analysis, store.root / "report")
    if args.json:
        print(json.dumps(analysis.to_json_dict()))
    else:
        pending = _pending_count(store)
        print(f"{store.root}: {len(trials)} trials" + (f", {pending} still pending" if pending else ""))
        print(verdict_text(analysis))
        print("\nOptimal base HPs (grid argmin; refined = parabola in log2 through its neighbours):")
        print(format_table(analysis.optima[[c for c in SHOWN_OPTIMA_COLUMNS if c in analysis.optima]]))
        if not analysis.savings.empty:
            print("\nCompute savings (FLOPs to reach the same loss as the reference):")
            print(format_table(analysis.savings))
        plots = sorted(str(p) for p in written.values() if str(p).endswith(".png"))
        print(f"\nreport: {store.root / 'report'} ({len(written)} files; plots: {', '.join(plots) or 'none'})")
    if not args.no_mlflow:
        _sync_quietly(store.root, args.tracking_uri, report_dir=store.root / "report")
    return EXIT_OK


def _pending_count(store) -> int:
    from .spec import parse_sweep

    if not store.spec_path.is_file():
        return 0
    sweep = parse_sweep(store.spec_path.read_text(), source=str(store.spec_path))
    return len(sweep.pending(store.completed_ids()))


def _sync_quietly(results_dir: Path, tracking_uri: str | None, report_dir: Path | None = None) -> None:
    """Best effort: MLflow is a view of the Parquet rows, never a reason to fail."""
    from .tracking import TrackingError, sync

    try:
        sync(results_dir, tracking_uri, report_dir=report_dir)
    except TrackingError as e:
        print(f"warning: {e}; the report is on disk; run `completep-sweep sync {results_dir}` later", file=sys.stderr)


def cmd_export(args) -> int:
    from .analysis import transferred_hps
    from .report import export_table
    from .store import write_atomic

    if (args.target_width is None) != (args.target_depth is None):
        raise UsageError("--target-width and --target-depth go together; give both to transfer the base optimum")
    _, _, analysis = _analysis(args)
    if args.target_width is not None:
        table = transferred_hps(analysis, target_width=args.target_width, target_depth=args.target_depth)
    else:
        table = analysis.optima[[c for c in SHOWN_OPTIMA_COLUMNS if c in analysis.optima]]
    text = export_table(table, args.format)
    if args.output:
        write_atomic(Path(args.output), lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {args.output} ({len(table)} rows, {args.format})", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_sync(args) -> int:
    from .tracking import TrackingError, default_tracking_uri, sync

    results_dir = _resolve_results(args.target, args.results)
    uri = args.tracking_uri or default_tracking_uri(results_dir.parent)
    report = results_dir / "report"
    try:
        counts = sync(results_dir, uri, report_dir=report if report.is_dir() else None)
    except TrackingError as e:
        print(f"completep-sweep sync: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"MLflow at {uri}: {counts['created']} runs created, {counts['updated']} updated, {counts['skipped']} already complete")
    return EXIT_OK


def cmd_ui(args) -> int:
    from .tracking import run_ui

    return run_ui(Path(args.results), port=args.port, host=args.host, tracking_uri=args.tracking_uri, sweep=args.sweep)
