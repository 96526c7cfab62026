"""``explain``, ``trial``, ``coord-check``: the rules at a shape, one trial, coordinate checks."""

from __future__ import annotations

import json
import sys

from ..fmt import json_value
from . import EXIT_OK, UsageError


def _config(args, **more):
    """The preset with the shape and base HPs the command line gives (None keeps the preset's)."""
    from ..presets import preset_config

    return preset_config(
        args.model,
        parameterization=args.parameterization,
        width=args.width,
        depth=args.depth,
        base_width=args.base_width,
        base_depth=args.base_depth,
        lr=args.lr,
        init_std=args.init_std,
        **more,
    )


def cmd_explain(args) -> int:
    from ..tables import rules_table

    # The preset gives the base shape and the base HPs; TrialConfig checks the shape as `trial` does.
    config = _config(args, weight_decay=args.weight_decay, eps=args.eps)
    rules = config.rules()
    if args.json:
        print(json.dumps(rules.to_dict()))
    else:
        if args.base_width is None or args.base_depth is None:  # say where an unstated base came from
            print(
                f"base shape: width {config.base_width}, depth {config.base_depth} (the {args.model} "
                "preset's; pass --base-width and --base-depth for the shape your HPs were tuned at)"
            )
        print(
            rules_table(
                rules,
                lr=config.lr,
                init_std=config.init_std,
                weight_decay=config.weight_decay,
                eps=config.eps,
            )
        )
    return EXIT_OK


def cmd_trial(args) -> int:
    from ..fmt import describe
    from ..presets import config_warnings
    from ..train import Runtime, train_trial

    flags = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup_steps,
        "eval_interval": args.eval_interval,
    }
    config = _config(args, sweep="adhoc", seed=args.seed, **_settings(args.set, flags))
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    if not args.json:
        print(
            f"trial {config.trial_id}: {describe(config)}, init_std {config.init_std:g}, "
            f"{config.steps} steps ({config.tokens:,} tokens)"
        )

    def progress(point):
        if not args.json:
            print(
                f"  step {point.step:>6}  train {point.train_loss:.4f}  val {point.val_loss:.4f}  "
                f"lr {point.lr:.3g}",
                flush=True,
            )

    result = train_trial(config, on_eval=progress, runtime=Runtime(device=args.device, threads=args.threads))
    if args.json:
        print(json.dumps(json_value(result.row()), allow_nan=False))
    else:
        print(
            f"{result.status}: final train {result.final_train_loss:.4f}, val {result.final_val_loss:.4f}, "
            f"{result.wall_time_s:.1f}s on {result.device}, {result.flops:.3g} FLOPs"
        )
    return EXIT_OK


def _settings(pairs: list[str], flags: dict) -> dict:
    """``--set KEY=VALUE`` pairs merged with the command's own flags (None: not given): each key a
    sweep file's [train] or [model_overrides] key, each value parsed as TOML (bare text: a string)."""
    import difflib
    import tomllib

    from ..presets import MODEL_FIELDS, TRAIN_FIELDS

    allowed = sorted((TRAIN_FIELDS | MODEL_FIELDS) - {"lr", "init_std", "seed", "base_width", "base_depth"})
    out = {k: v for k, v in flags.items() if v is not None}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"--set {pair}: {'write KEY=VALUE' if not sep else f'unknown key {key!r}{guess}'}; "
                f"keys: {', '.join(allowed)} (lr, init_std, seed and the base shape have flags of their own)"
            )
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a path or a name, unquoted
        if key in out and out[key] != value:
            raise UsageError(f"--set {pair}: {key} is also given as {out[key]!r}; give it once")
        out[key] = value
    return out


def cmd_coord_check(args) -> int:
    from ..coord_check import expectation, run_coord_check
    from ..presets import load_preset, preset_config
    from ..shape import ShapeError, check_heads

    preset = load_preset(args.model)
    base = preset_config(
        args.model,
        parameterization=args.parameterizations[0],
        width=preset.get("base_width", 32),
        depth=preset.get("base_depth", 2),
    )
    values = args.values or (
        [2, 4, 8, 16, 32] if args.axis == "depth" else [base.base_width * m for m in (1, 2, 4, 8)]
    )
    try:
        for width in values if args.axis == "width" else ():
            check_heads(width, base.head_dim, field="--values")
    except ShapeError as e:
        raise UsageError(f"--values: {e}") from None
    result = run_coord_check(
        base,
        axis=args.axis,
        values=values,
        parameterizations=args.parameterizations,
        steps=args.steps,
        lr=args.lr,
        threads=args.threads,
    )
    written = []
    if args.plot:
        from ..plots import plot_coord_check

        written = plot_coord_check(result.records, args.plot)
    if args.json:
        print(
            json.dumps(
                {
                    "axis": args.axis,
                    "values": values,
                    "steps": args.steps,
                    "lr": args.lr,
                    "slopes": result.slopes,
                    "passed": result.passed,
                }
            )
        )
        return EXIT_OK
    print(
        f"coordinate check over {args.axis} {values}: {args.steps} steps at lr {args.lr:g}; "
        "slope of log2 mean|x| of the final residual stream vs log2 " + args.axis
    )
    for p, slope in result.slopes.items():
        low, high = expectation(p, args.axis)
        want = "grows" if high == float("inf") else "flat"
        verdict = "PASS" if result.passed[p] else "FAIL"
        print(f"  {p:<10} slope {slope:+.3f}   expected {want:<6} {verdict}")
    if written:
        print(f"plot: {', '.join(map(str, written))}")
    return EXIT_OK


def cmd_lazy_check(args) -> int:
    from ..lazy_check import TOLERANCE, run_lazy_check
    from ..presets import load_preset, preset_config

    preset = load_preset(args.model)
    base = preset_config(
        args.model,
        parameterization=args.parameterizations[0],
        width=preset.get("base_width", 32),
        depth=preset.get("base_depth", 2),
    )
    result = run_lazy_check(base, depths=args.values, parameterizations=args.parameterizations, lr=args.lr)
    if args.json:
        print(
            json.dumps(
                {
                    "depths": args.values,
                    "lr": args.lr,
                    "slopes": result.slopes,
                    "expected": result.expected,
                    "passed": result.passed,
                }
            )
        )
        return EXIT_OK
    print(
        f"laziness check over depth {args.values} at width {base.base_width}: "
        f"one AdamW step at lr {args.lr:g}; "
        "slope of log2 (distance of block 0's update from its linearization) vs log2 depth"
    )
    table = result.records.groupby(["parameterization", "depth"])["distance"].mean().unstack("depth")
    for p, slope in result.slopes.items():
        distances = " ".join(f"{v:.3f}" for v in table.loc[p])
        verdict = "PASS" if result.passed[p] else "FAIL"
        print(
            f"  {p:<10} slope {slope:+.3f}   expected {result.expected[p]:+.2f} ± {TOLERANCE:g}  {verdict}"
            f"   distances {distances}"
        )
    return EXIT_OK
