"""What each ``completep-sweep`` command does, given its parsed arguments (cli.py parses).

Every handler returns an exit status. Bad input raises ``UsageError`` (or ``SpecError``,
``DataError``, ``ClusterError``) before anything is written or started; the CLI turns those into one
line and exit 2. Heavy modules (torch, Ray, MLflow, matplotlib) are imported inside the handlers
that need them, so ``--help`` and ``validate`` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .fmt import duration, json_value

DEFAULT_RESULTS = "results"
EXIT_OK, EXIT_FAILED = 0, 1
GFLOPS_PER_CPU = 30.0  # measured here for the tiny preset; real rows replace it once some exist


class UsageError(Exception):
    """Bad input detected after parsing: one line, exit 2, nothing started."""


# ---------------------------------------------------------------- one trial, the rules, coord checks


def cmd_explain(args) -> int:
    from .parameterization import scaling_rules
    from .tables import rules_table

    rules = scaling_rules(args.parameterization, width=args.width, depth=args.depth,
                          base_width=args.base_width, base_depth=args.base_depth)
    if args.json:
        print(json.dumps(rules.to_dict()))
    else:
        print(rules_table(rules, lr=args.lr, init_std=args.init_std, weight_decay=args.weight_decay, eps=args.eps))
    return EXIT_OK


def cmd_trial(args) -> int:
    from .fmt import describe
    from .presets import preset_config
    from .train import Runtime, train_trial

    config = preset_config(
        args.model, sweep="adhoc", parameterization=args.parameterization, width=args.width, depth=args.depth,
        base_width=args.base_width, base_depth=args.base_depth, lr=args.lr, init_std=args.init_std,
        steps=args.steps, seed=args.seed, batch_size=args.batch_size,
    )
    if not args.json:
        print(f"trial {config.trial_id}: {describe(config)}, init_std {config.init_std:g}, "
              f"{config.steps} steps ({config.tokens:,} tokens)")

    def progress(point):
        if not args.json:
            print(f"  step {point.step:>6}  train {point.train_loss:.4f}  val {point.val_loss:.4f}  "
                  f"lr {point.lr:.3g}", flush=True)

    result = train_trial(config, on_eval=progress, runtime=Runtime(device=args.device, threads=args.threads))
    if args.json:
        print(json.dumps(json_value(result.row()), allow_nan=False))
    else:
        print(f"{result.status}: final train {result.final_train_loss:.4f}, val {result.final_val_loss:.4f}, "
              f"{result.wall_time_s:.1f}s on {result.device}, {result.flops:.3g} FLOPs")
    return EXIT_OK


def cmd_coord_check(args) -> int:
    from .coord_check import expectation, run_coord_check
    from .presets import load_preset, preset_config
    from .shape import ShapeError, check_heads

    preset = load_preset(args.model)
    base = preset_config(args.model, parameterization=args.parameterizations[0],
                         width=preset.get("base_width", 32), depth=preset.get("base_depth", 2))
    values = args.values or ([2, 4, 8, 16, 32] if args.axis == "depth" else [base.base_width * m for m in (1, 2, 4, 8)])
    try:
        for width in values if args.axis == "width" else ():
            check_heads(width, base.head_dim, field="--values")
    except ShapeError as e:
        raise UsageError(f"--values: {e}") from None
    result = run_coord_check(base, axis=args.axis, values=values, parameterizations=args.parameterizations,
                             steps=args.steps, lr=args.lr, threads=args.threads)
    if args.plot:
        from .plots import plot_coord_check
        plot_coord_check(result.records, args.plot)
    if args.json:
        print(json.dumps({"axis": args.axis, "values": values, "steps": args.steps, "lr": args.lr,
                          "slopes": result.slopes, "passed": result.passed}))
        return EXIT_OK
    print(f"coordinate check over {args.axis} {values}: {args.steps} steps at lr {args.lr:g}; "
          "slope of log2 mean|x| of the final residual stream vs log2 " + args.axis)
    for p, slope in result.slopes.items():
        low, high = expectation(p, args.axis)
        want = "grows" if high == float("inf") else "flat"
        verdict = "PASS" if result.passed[p] else "FAIL"
        print(f"  {p:<10} slope {slope:+.3f}   expected {want:<6} {verdict}")
    if args.plot:
        print(f"plot: {args.plot}")
    return EXIT_OK


# ---------------------------------------------------------------- sweeps


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


def cmd_validate(args) -> int:
    sweep, store = _sweep_and_store(args)
    done = store.completed_ids()
    ids, pending = sweep.ids, sweep.pending(done)
    from .runner.cluster import concurrency as trials_at_once

    concurrency = trials_at_once(sweep.spec.resources.cpus_per_trial, sweep.spec.resources.max_concurrent)
    flops, seconds, how = _estimate(sweep, store, pending, concurrency)
    spec = sweep.spec
    axes = ", ".join(f"{k} x{len(v) if isinstance(v, list) else len(v.values())}" for k, v in spec.grid.items())
    print(f"{args.spec}: valid. sweep {spec.name!r}, model {spec.model}, "
          f"{len(spec.parameterizations)} parameterizations x {axes or 'no grid'}")
    print(f"  {len(ids)} trials, {len(ids & done)} done, {len(pending)} pending (results: {store.root})")
    print(f"  pending work: {flops:.3g} FLOPs, about {duration(seconds)} at {concurrency} concurrent "
          f"trial(s) here ({how})")
    return EXIT_OK


def cmd_run(args) -> int:
    sweep, store = _sweep_and_store(args)
    from .runner.cluster import connect  # Ray is imported only once the input is known to be good
    from .runner.sweep import run_sweep

    connect(args.address)
    store.write_spec(sweep.text)
    sink = None if args.no_mlflow else _tracker(store, args.tracking_uri)
    print(f"sweep {sweep.name}: {len(sweep.ids)} trials -> {store.root}", file=sys.stderr)
    try:
        summary = run_sweep(sweep, store, address=args.address, max_concurrent=args.max_concurrent, sink=sink)
    finally:
        if sink is not None:
            sink.close()
    print(f"sweep {sweep.name}: {summary.ran} ran ({summary.ok} ok, {summary.diverged} diverged, "
          f"{summary.errored} error), {summary.skipped} already done, {duration(summary.wall_time_s)}; "
          f"rows in {store.trials_dir}")
    if summary.errored:
        print(f"{summary.errored} trial(s) errored after retries: see the 'error' column "
              f"(completep-sweep status {store.root}); re-running retries them", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _tracker(store, tracking_uri: str | None):
    from .tracking.tracker import Tracker

    return Tracker(store.root, tracking_uri=tracking_uri)


def _resolve_results(target: str, results_root: str) -> Path:
    path = Path(target)
    if (path / "trials").is_dir() or (path / "spec.toml").is_file():
        return path
    named = Path(results_root) / target
    if named.is_dir():
        return named
    raise UsageError(f"RESULTS_DIR_OR_NAME: {target!r} is neither a results folder nor a sweep name "
                     f"under {results_root}/")


def _pending(store) -> tuple[int, int] | None:
    """(pending, total) of the sweep file the results were last run with, if it is recorded."""
    from .spec import parse_sweep

    if not store.spec_path.is_file():
        return None
    sweep = parse_sweep(store.spec_path.read_text(), source=str(store.spec_path))
    return len(sweep.pending(store.completed_ids())), len(sweep.ids)


def cmd_status(args) -> int:
    from .fmt import describe
    from .store import ResultStore

    store = ResultStore(_resolve_results(args.target, args.results))
    df = store.load()
    counts = df.status.value_counts().to_dict() if len(df) else {}
    pending = _pending(store)
    print(f"{store.root}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "error"))
          + ("" if pending is None else f"; {pending[0]} pending of {pending[1]}"))
    for row in df[df.status == "error"].head(5).to_dict("records"):
        last = row["error"].strip().splitlines()[-1] if row["error"] else ""
        print(f"  error {row['trial_id']}: {describe(row)}: {last}")
    return EXIT_OK


def cmd_submit(args) -> int:
    from .runner.jobs import dashboard_address, stage_run, submit_job, wait_for_job

    dashboard_address(args.address)
    sweep, _ = _sweep_and_store(args)
    submission_id, entrypoint = stage_run(name=sweep.name, text=sweep.text, spec_hash=sweep.spec_hash,
                                          attempt=args.attempt, results=args.results,
                                          max_concurrent=args.max_concurrent)
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI",) if k in os.environ}
    try:
        job_id, state = submit_job(address=args.address, entrypoint=entrypoint, submission_id=submission_id,
                                   env=env)
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


# ---------------------------------------------------------------- results: report, export, MLflow


def _analysis(args):
    from .analysis import analyze
    from .store import ResultStore

    store = ResultStore(_resolve_results(args.target, args.results))
    trials = store.load()
    if trials.empty:
        raise UsageError(f"RESULTS_DIR: {store.root} has no trial rows yet; run `completep-sweep run SPEC` first")
    return store, analyze(trials, tolerance_octaves=args.tolerance, loss=args.loss)


SHOWN_OPTIMA_COLUMNS = ["parameterization", "width", "depth", "hp", "optimum", "optimum_refined", "interval_low",
                        "interval_high", "loss", "at_edge", "n_seeds", "n_diverged"]


def cmd_report(args) -> int:
    from .report import verdict_text, write_report
    from .tables import format_table

    store, analysis = _analysis(args)
    written = write_report(analysis, store.root / "report")
    if args.json:
        print(json.dumps(analysis.to_json_dict()))
    else:
        pending = _pending(store)
        print(f"{store.root}: {len(analysis.trials)} trials"
              + (f", {pending[0]} still pending" if pending and pending[0] else ""))
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
    from .tracking import TrackingError, sync

    try:
        sync(results_dir, tracking_uri, report_dir=report_dir)
    except TrackingError as e:
        print(f"warning: {e}; the report is on disk; run `completep-sweep sync {results_dir}` later", file=sys.stderr)


def cmd_export(args) -> int:
    from .analysis import transferred_hps
    from .store import write_text
    from .tables import export_table

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
    from .tracking import TrackingError, default_tracking_uri, sync

    results_dir = _resolve_results(args.target, args.results)
    uri = args.tracking_uri or default_tracking_uri(results_dir.parent)
    report = results_dir / "report"
    try:
        counts = sync(results_dir, uri, report_dir=report if report.is_dir() else None)
    except TrackingError as e:
        print(f"completep-sweep sync: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"MLflow at {uri}: {counts['created']} runs created, {counts['updated']} updated, "
          f"{counts['skipped']} already complete")
    return EXIT_OK


def cmd_ui(args) -> int:
    from .tracking.ui import run_ui

    return run_ui(Path(args.results), port=args.port, host=args.host, tracking_uri=args.tracking_uri, sweep=args.sweep)
