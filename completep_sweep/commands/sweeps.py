"""``validate``, ``run``, ``status``, ``submit``: a sweep file, checked, run, followed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..fmt import duration
from . import (
    DEFAULT_RESULTS,
    EXIT_ENVIRONMENT,
    EXIT_FAILED,
    EXIT_OK,
    EnvironmentFailure,
    UsageError,
    check_space,
    check_writable,
    remote_folder,
)

# Seconds per trial = 1.6 + FLOPs / 65e9 + 2.7e-3 × depth × steps: fitted here (tiny preset, one
# core, batch 16 x 64, widths 32-64, depths 2-32) and used until finished trials give their own fit.
COST_MODEL = (1.6, 1 / 65e9, 2.7e-3)
RAY_START_S = 10.0
LARGE_SWEEP = 20_000


def _sweep_and_store(args, *, read_only: bool = False, reach: bool = True):
    """The sweep file and its store under --results (a folder, or a URI on object storage that is
    reached first, unless ``reach`` is False: `submit`, whose driver runs on the cluster)."""
    from ..results import best_value_resolver
    from ..store import sweep_store
    from ..store_fs import RemoteError, check_uri, is_uri
    from ..sweep import load_sweep

    if is_uri(args.results):
        try:
            check_uri(args.results)
        except RemoteError as e:
            raise UsageError(f"--results: {e}") from None
        if reach:
            remote_folder(args.results, "--results")
    sweep = load_sweep(args.spec, resolve=best_value_resolver(args.results))
    return sweep, sweep_store(args.results, sweep.name, read_only=read_only) if reach else None


def _cost_model(store):
    """(the wall seconds one trial costs, where the cost model came from).

    Cost of a trial = a fixed overhead (model build, data, evaluation) + FLOPs at a rate + a cost
    per layer-step (small matmuls run below the machine's FLOP rate: a deep, narrow model costs
    more than its FLOPs say). Fitted to the finished trials when they vary enough, else the
    values measured here for the tiny preset (one core, batch 16 x 64).
    """
    import numpy as np

    coef, how = np.array(COST_MODEL), "measured here for the tiny preset on one core"
    done = store.load(include_errors=False)
    done = done[(done.status == "ok") & (done.wall_time_s > 0)]
    if len(done) >= 4 and len({(f, d) for f, d in zip(done.flops, done.depth * done.steps)}) >= 3:
        features = np.column_stack([np.ones(len(done)), done.flops, done.depth * done.steps])
        fit, *_ = np.linalg.lstsq(features, done.wall_time_s.to_numpy(float), rcond=None)
        if (fit >= 0).all():
            coef, how = fit, f"fitted to {len(done)} finished trials"
    one, per_flop, per_layer_step = (float(c) for c in coef)
    return lambda t: one + per_flop * t.flops + per_layer_step * t.depth * t.steps, how


def _estimate(store, pending, concurrency: int):
    """(FLOPs of the pending trials, their wall seconds at ``concurrency``, the cost model: the seconds
    one trial costs and where that came from, ``_cost_model``)."""
    price, how = _cost_model(store)
    seconds = sum(price(t) for t in pending) / max(1, concurrency) + (RAY_START_S if pending else 0)
    return float(sum(t.flops for t in pending)), seconds, price, how


def cmd_validate(args) -> int:
    from ..runner.cluster import check_workers
    from ..runner.cluster import concurrency as trials_at_once
    from ..search import make_plan
    from ..trial import SHAPE_AND_SEED

    sweep, store = _sweep_and_store(args, read_only=True)
    rows = store.load()
    _pull_study(sweep, store)
    plan = make_plan(sweep, rows, store.root, read_only=True, folder=store.folder)
    done = store.completed_ids() & set(rows["trial_id"])  # a row skipped as unreadable is pending
    planned = plan.planned()
    pending = [c for c in planned if c.trial_id not in done]
    res, spec = sweep.spec.resources, sweep.spec
    check_workers(res, [sweep.template, *planned])  # exit 2: no cluster could run these trials so
    concurrency = trials_at_once(res.cpus_per_trial * res.workers_per_trial, res.max_concurrent)

    def axis(k, v):
        grid = spec.grid[k]
        if spec.search.method == "optuna" and isinstance(grid, dict) and "log2_range" in grid:
            return f"{k} in 2^{grid['log2_range'][0]:g}..2^{grid['log2_range'][1]:g}"
        return f"{k} x{len(v)}"

    axes = ", ".join(axis(k, v) for k, v in sweep.axes.items())
    print(
        f"{args.spec}: valid. sweep {spec.name!r}, model {spec.model}, "
        f"{len(spec.parameterizations)} parameterizations x {axes or 'no grid'}"
    )
    t = sweep.template
    if t.trainer or t.command:
        version = f" (version {t.trainer_version})" if t.trainer else ""
        print(f"  trainer: {t.trainer or 'command ' + t.command}{version}")
    low, high = plan.bounds()
    method = spec.search.method
    if method == "grid":
        print(
            f"  {low} trials, {low - len(pending)} done, {len(pending)} pending (results: {store.location})"
        )
    elif method in ("bracket", "decided"):
        print(
            f"  {method} search over {spec.search.hp}: {len(planned)} trials planned so far "
            f"({len(pending)} to run), between {low} and {high} in all; "
            f"{len(planned) - len(pending)} done (results: {store.location})"
        )
    else:
        dims = [k for k in spec.grid if k not in SHAPE_AND_SEED]
        print(
            f"  optuna (TPE) over {', '.join(dims)}: {low} trials in {store.folder / 'optuna.db'}, "
            f"{len(planned)} asked so far"
        )
    flops, seconds, price, how = _estimate(store, pending, concurrency)
    if res.gpus_per_trial > 0:  # GPU trials: the CPU measurements here say nothing of their cost
        from ..estimate import gpu_line

        done = len(planned) - len(pending)
        reach = plan.reach() if hasattr(plan, "reach") else None
        print(gpu_line(pending, low=low, high=high, done=done, template=sweep.template, reach=reach))
    elif method == "grid":
        print(
            f"  pending work: {flops:.3g} FLOPs, about {duration(seconds)} at {concurrency} concurrent "
            f"trial(s) here ({how})"
        )
    else:
        each = sum(map(price, pending)) / len(pending) if pending else price(sweep.template)
        left = [max(0, n - len(planned) + len(pending)) * each / concurrency for n in (low, high)]
        if hasattr(plan, "reach"):  # the most, priced at the shapes the search can reach (deeper costs more)
            from ..estimate import most_work

            left[1] = most_work(plan.reach(), high - len(planned) + len(pending), price) / concurrency
        left = [duration(s) for s in left]
        span = left[0] if low == high else f"{left[0]} (fewest trials) to {left[1]} (most)"
        print(f"  pending work: about {span} at {concurrency} concurrent trial(s) here ({how})")
    if len(pending) > LARGE_SWEEP:
        print(
            f"  warning: {len(pending):,} trials is a large grid; most of them sit far from any optimum. "
            'A bracket search ([search] method = "bracket") spends them near the optima instead.'
        )
    _warn_resources(res)
    from ..memory import memory_summary

    if not (t.trainer or t.command):  # the estimate is of the built-in model; a user's is unknown here
        print(
            "  "
            + memory_summary(
                sweep,
                concurrency=concurrency,
                cpus_per_trial=res.cpus_per_trial,
                gpus_per_trial=res.gpus_per_trial,
            )
        )
    for warning in _config_warnings(sweep):
        print(f"  warning: {warning}")
    return EXIT_OK


def _config_warnings(sweep) -> list[str]:
    from ..presets import config_warnings

    return config_warnings(sweep.template)


def _warn_resources(res) -> None:
    """What `run` here would refuse (validate accepts files meant for a cluster, but says so)."""
    from ..runner.cluster import ClusterError, check_local_cpus

    try:
        check_local_cpus(res.cpus_per_trial, res.workers_per_trial)  # all of a trial's workers at once
        if res.gpus_per_trial > 0 and not _cuda_here():
            raise ClusterError(f"resources.gpus_per_trial = {res.gpus_per_trial:g}: this machine has no GPU")
    except ClusterError as e:
        print(f"  note: `run` here would refuse it: {e}; on a cluster use run --address or submit")


def _cuda_here() -> bool:
    import shutil

    return bool(shutil.which("nvidia-smi")) or Path("/dev/nvidia0").exists()


def cmd_run(args) -> int:
    sweep, store = _sweep_and_store(args)
    from ..runner.cluster import check_address, check_local_cpus, check_resources, check_workers, connect
    from ..search import make_plan
    from ..search.study import STUDY_FILE
    from ..store import LockedError
    from ..store_fs import push, scrub

    res = sweep.spec.resources
    cpus, gpus, workers = res.cpus_per_trial, res.gpus_per_trial, res.workers_per_trial
    check_address(args.address)
    if not args.address:
        check_local_cpus(cpus, workers)
    if store.remote:  # no disk to fill; a probe object is written and removed
        remote_folder(store.location, "--results", write=True)
    else:
        check_writable(store.root, "--results")
        check_space(store.root)
    try:
        with store.lock(command=" ".join(["completep-sweep", *sys.argv[1:]])):
            store.completed_ids()  # quarantines what does not read, before the rows are loaded
            rows = store.load()
            _pull_study(sweep, store)
            # once: the runner takes it as it is
            plan = make_plan(sweep, rows, store.root, folder=store.folder)
            try:
                check_workers(res, [sweep.template, *plan.planned()])
                if not plan.finished:  # else it says so, without starting Ray
                    connect(args.address)  # Ray is imported only now that the input is known to be good
                    check_resources(cpus, gpus, workers=workers, wait_s=res.autoscale_wait_s)
                return _run_locked(args, sweep, store, plan, rows)
            finally:
                if sweep.spec.search.method == "optuna":  # the study's local copy goes back beside the rows
                    push(store, STUDY_FILE)
    except LockedError as e:
        raise UsageError(str(e)) from None
    except OSError as e:  # the folder lock or spec.toml on a disk that filled up meanwhile
        fix = "check the object store" if store.remote else "free space on that disk"
        raise EnvironmentFailure(
            f"--results: cannot write to {store.location} ({scrub(e.strerror or str(e))}); {fix} "
            "(or pass --results DIR elsewhere) and run again"
        ) from None


def _pull_study(sweep, store) -> None:
    """An Optuna study on object storage: its SQLite file is copied into the local cache folder."""
    from ..search.study import STUDY_FILE
    from ..store_fs import pull

    if sweep.spec.search.method == "optuna":
        pull(store, STUDY_FILE)


def _run_locked(args, sweep, store, plan, rows) -> int:
    from ..runner.sweep import run_sweep

    store.write_spec(sweep.text)
    sink = None if args.no_mlflow else _tracker(store, args.tracking_uri, sweep.text, rows)
    method = sweep.spec.search.method
    what = f"{len(sweep.ids)} trials" if method == "grid" else f"{method} search"
    print(f"sweep {sweep.name}: {what} -> {store.location}", file=sys.stderr)
    for warning in _config_warnings(sweep):
        print(f"warning: {warning}", file=sys.stderr)
    try:
        summary = run_sweep(
            sweep, store, address=args.address, max_concurrent=args.max_concurrent, sink=sink, plan=plan
        )
    finally:
        if sink is not None:
            sink.close()  # MLflow gets every trial that finished, interrupted or not
    print(
        f"sweep {sweep.name}: {summary.ran} ran ({summary.ok} ok, {summary.diverged} diverged, "
        f"{summary.errored} error), {summary.skipped} already done, {duration(summary.wall_time_s)}; "
        f"rows in {store.trials_dir}"
    )
    for line, why in getattr(plan, "stops", dict)().items():  # method = "decided": why each line stopped
        print(f"  {' '.join(map(str, line))}: {why}")
    resume = f"completep-sweep run {args.spec}" + (
        f" --results {args.results}" if args.results != DEFAULT_RESULTS else ""
    )
    if summary.failed:
        left = summary.total - summary.skipped - summary.ran
        print(
            f"sweep {sweep.name}: stopped: {summary.failed}; the rows of finished trials are kept, "
            f"{left} trial(s) did not finish (those in flight were stopped and run again on resume). "
            f"Free space, then resume with: {resume}",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT
    if summary.interrupted:
        left = summary.total - summary.skipped - summary.ran
        print(
            f"sweep {sweep.name}: interrupted by {summary.interrupted}; "
            "the rows of finished trials are kept, "
            f"{left} trial(s) did not finish (those in flight were stopped). Resume with: {resume}",
            file=sys.stderr,
        )
        return summary.exit_code
    if summary.errored:
        print(
            f"{summary.errored} trial(s) errored after retries: see the 'error' column "
            f"(completep-sweep status {store.location}); re-running retries them",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _tracker(store, tracking_uri: str | None, spec_text: str, rows):
    from ..tracking.tracker import Tracker

    finished = rows[rows["status"].isin(("ok", "diverged"))].to_dict("records")
    return Tracker(store, tracking_uri=tracking_uri, spec_text=spec_text, backfill=finished)


def cmd_submit(args) -> int:
    from ..runner.jobs import dashboard_address, stage_run, submit_job, wait_for_job

    dashboard_address(args.address)
    from ..store_fs import SHAREABLE_ENV, is_uri

    sweep, _ = _sweep_and_store(args, reach=False)
    submission_id, entrypoint = stage_run(
        name=sweep.name,
        text=sweep.text,
        spec_hash=sweep.spec_hash,
        attempt=args.attempt,
        results=args.results,
        max_concurrent=args.max_concurrent,
    )
    # The object store's endpoint and region travel with the job; its credentials never do (Ray shows
    # a job's environment): the cluster's nodes need their own (an instance role, or their environment).
    shared = ("MLFLOW_TRACKING_URI", *(SHAREABLE_ENV if is_uri(args.results) else ()))
    env = {k: os.environ[k] for k in shared if k in os.environ}
    try:
        job_id, state = submit_job(
            address=args.address, entrypoint=entrypoint, submission_id=submission_id, env=env
        )
    except RuntimeError as e:
        print(f"completep-sweep submit: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    where = "at" if is_uri(args.results) else "on the head node under"
    print(f"{job_id}: {state}; results {where} {args.results.rstrip('/')}/{sweep.name}")
    if not args.wait:
        print(f"follow:  ray job logs --follow --address {args.address} {job_id}")
        print(f"status:  ray job status --address {args.address} {job_id}")
        return EXIT_OK
    final, logs = wait_for_job(args.address, job_id)
    if final != "SUCCEEDED":
        print(f"job {job_id} ended {final}; last log lines:\n{logs}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
