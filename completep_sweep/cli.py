"""The ``completep-sweep`` command. Bad input exits 2 with one line naming the argument and the fix."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from .commands import (
    DEFAULT_RESULTS, EXIT_OK, UsageError, cmd_export, cmd_report, cmd_run, cmd_status, cmd_submit, cmd_sync, cmd_ui,
    cmd_validate,
)
from .parameterization import GROUPS, NAMES_HELP, get_parameterization, scaling_rules

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_float(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number (got {text!r})") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number (got {text})")
        return value
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} (got {text!r})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} (got {value})")
        return value
    return parse


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def device_name(text: str) -> str:
    if text == "auto" or text == "cpu" or re.fullmatch(r"cuda(:\d+)?", text):
        if text.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise argparse.ArgumentTypeError(f"{text}: CUDA is not available here; use auto or cpu")
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N (got {text!r})")


def parameterization_name(text: str) -> str:
    try:
        return get_parameterization(text).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 2,4,8 (got {text!r})") from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two positive integers like 2,4,8 (got {text!r})")
    return values


def name_list(text: str) -> list[str]:
    return [parameterization_name(v.strip()) for v in text.split(",") if v.strip()]


# ---------------------------------------------------------------- explain
def cmd_explain(args) -> int:
    rules = scaling_rules(args.parameterization, width=args.width, depth=args.depth,
                          base_width=args.base_width, base_depth=args.base_depth)
    if args.json:
        print(json.dumps(rules.to_dict()))
        return EXIT_OK
    alpha = "none" if rules.alpha is None else f"{rules.alpha:g}"
    print(f"{rules.parameterization} (alpha {alpha}) at width {rules.width}, depth {rules.depth}; "
          f"base ({rules.base_width}, {rules.base_depth}): width_mult {rules.width_mult:g}, depth_mult {rules.depth_mult:g}")
    print(f"residual multiplier {rules.residual_multiplier:.6g}   output (logit) multiplier {rules.output_multiplier:.6g}")
    print(f"base HPs: lr {args.lr:g}, init_std {args.init_std:g}, weight_decay {args.weight_decay:g}, eps {args.eps:g}\n")
    header = f"{'group':<14}{'init_std x':>11}{'lr x':>10}{'wd x':>8}{'eps x':>10} | {'init_std':>10}{'lr':>11}{'wd':>9}{'eps':>10}"
    print(header)
    print("-" * len(header))
    for g in GROUPS:
        r = rules.groups[g]
        init = "fixed" if r.init_std_mult is None else f"{r.init_std_mult:.4g}"
        init_eff = "fixed" if r.init_std_mult is None else f"{args.init_std * r.init_std_mult:.4g}"
        print(f"{g:<14}{init:>11}{r.lr_mult:>10.4g}{r.weight_decay_mult:>8.4g}{r.eps_mult:>10.4g} | "
              f"{init_eff:>10}{args.lr * r.lr_mult:>11.4g}{args.weight_decay * r.weight_decay_mult:>9.4g}"
              f"{args.eps * r.eps_mult:>10.3g}")
    print("\nnorms start at 1, biases at 0; wd is PyTorch-AdamW style (decay = lr * wd * theta).")
    return EXIT_OK


# ---------------------------------------------------------------- trial
def cmd_trial(args) -> int:
    from .spec import preset_config
    from .train import Runtime, train_trial

    config = preset_config(
        args.model, sweep="adhoc", parameterization=args.parameterization, width=args.width, depth=args.depth,
        base_width=args.base_width, base_depth=args.base_depth, lr=args.lr, init_std=args.init_std,
        steps=args.steps, seed=args.seed, batch_size=args.batch_size,
    )
    if not args.json:
        print(f"trial {config.trial_id}: {config.parameterization} width {config.width} depth {config.depth} "
              f"lr {config.lr:g} init_std {config.init_std:g}, {config.steps} steps ({config.tokens:,} tokens)")

    def progress(point):
        if not args.json:
            print(f"  step {point.step:>6}  train {point.train_loss:.4f}  val {point.val_loss:.4f}  lr {point.lr:.3g}", flush=True)

    result = train_trial(config, on_eval=progress, runtime=Runtime(device=args.device, threads=args.threads))
    row = result.row()
    if args.json:
        finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        print(json.dumps(finite, allow_nan=False))
    else:
        print(f"{result.status}: final train {result.final_train_loss:.4f}, val {result.final_val_loss:.4f}, "
              f"{result.wall_time_s:.1f}s on {result.device}, {result.flops:.3g} FLOPs")
    return EXIT_OK


# ---------------------------------------------------------------- coord-check
def cmd_coord_check(args) -> int:
    from .coord_check import expectation, run_coord_check
    from .spec import load_preset, preset_config

    preset = load_preset(args.model)
    base = preset_config(args.model, parameterization=args.parameterizations[0],
                         width=preset.get("base_width", 32), depth=preset.get("base_depth", 2))
    values = args.values or ([2, 4, 8, 16, 32] if args.axis == "depth" else [base.base_width * m for m in (1, 2, 4, 8)])
    if args.axis == "width":
        bad = [v for v in values if v % base.head_dim]
        if bad:
            raise UsageError(f"--values: widths {bad} are not multiples of head_dim {base.head_dim}; use multiples of it")
    result = run_coord_check(base, axis=args.axis, values=values, parameterizations=args.parameterizations,
                             steps=args.steps, lr=args.lr, threads=args.threads)
    if args.plot:
        from .report import plot_coord_check
        plot_coord_check(result.records, args.plot)
    if args.json:
        print(json.dumps({"axis": args.axis, "values": values, "steps": args.steps, "lr": args.lr,
                          "slopes": result.slopes, "passed": result.passed}))
        return EXIT_OK
    print(f"coordinate check over {args.axis} {values}: {args.steps} steps at lr {args.lr:g}; "
          "slope of log2 mean|x| of the final residual stream vs log2 " + args.axis)
    for p, slope in result.slopes.items():
        bounds = expectation(p, args.axis)
        want = "no claim" if bounds is None else ("grows" if math.isinf(bounds[1]) else "flat")
        verdict = {True: "PASS", False: "FAIL", None: "-"}[result.passed[p]]
        print(f"  {p:<10} slope {slope:+.3f}   expected {want:<6} {verdict}")
    if args.plot:
        print(f"plot: {args.plot}")
    return EXIT_OK


# ---------------------------------------------------------------- parser
def build_parser() -> Parser:
    parser = Parser(prog="completep-sweep", description="Hyperparameter-transfer sweeps for SP, muP, alpha=0.5 and CompleteP.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("explain", help="print every parameter group's multipliers at a shape")
    p.add_argument("--parameterization", required=True, type=parameterization_name, help=NAMES_HELP)
    p.add_argument("--width", required=True, type=positive_int)
    p.add_argument("--depth", required=True, type=positive_int)
    p.add_argument("--base-width", required=True, type=positive_int)
    p.add_argument("--base-depth", required=True, type=positive_int)
    p.add_argument("--lr", type=positive_float("--lr"), default=2.0**-7, help="base LR for the effective values")
    p.add_argument("--init-std", type=positive_float("--init-std"), default=0.02)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eps", type=positive_float("--eps"), default=1e-8)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("trial", help="train one trial and print its result")
    p.add_argument("--model", default="tiny", help="model preset in models/ (default tiny)")
    p.add_argument("--parameterization", required=True, type=parameterization_name, help=NAMES_HELP)
    p.add_argument("--width", required=True, type=positive_int)
    p.add_argument("--depth", required=True, type=positive_int)
    p.add_argument("--base-width", type=positive_int, help="override the preset's base width")
    p.add_argument("--base-depth", type=positive_int, help="override the preset's base depth")
    p.add_argument("--lr", required=True, type=positive_float("--lr"))
    p.add_argument("--init-std", type=positive_float("--init-std"))
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads (default 1)")
    p.add_argument("--json", action="store_true", help="print the TrialResult row as JSON")
    p.set_defaults(func=cmd_trial)

    p = sub.add_parser("coord-check", help="coordinate check over depth or width")
    p.add_argument("--model", default="tiny")
    p.add_argument("--axis", required=True, choices=["depth", "width"])
    p.add_argument("--values", type=int_list, help="e.g. 2,4,8,16,32 (default: depths 2..32, or 1-8x base width)")
    p.add_argument("--steps", type=positive_int, default=10)
    p.add_argument("--lr", type=positive_float("--lr"), default=1e-3)
    p.add_argument("--parameterizations", type=name_list, default=["sp", "mup", "alpha0.5", "completep"])
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", help="write a PNG (and SVG) to this path")
    p.set_defaults(func=cmd_coord_check)

    p = sub.add_parser("validate", help="check a sweep file; print trials, pending and an estimate")
    p.add_argument("spec", metavar="SPEC", help="sweep file, e.g. sweeps/depth-transfer-demo.toml")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results root (default results/)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run or resume a sweep (only trials without a row run)")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results root (default results/)")
    p.add_argument("--address", help="Ray cluster address (default: start Ray in this process)")
    p.add_argument("--max-concurrent", type=positive_int, help="at most N trials at once")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow (rows are in Parquet anyway)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="counts by status and what is pending")
    p.add_argument("target", metavar="RESULTS_DIR_OR_NAME")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results root for a sweep name")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("submit", help="submit the run to a Ray cluster as a Ray Job")
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HOST:8265")
    p.add_argument("--results", default="~/completep-sweep/results",
                   help="results root on the cluster's head node (default ~/completep-sweep/results)")
    p.add_argument("--max-concurrent", type=positive_int)
    p.add_argument("--attempt", type=positive_int, default=1, help="bump to resubmit after a failed job")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends; exit 0 only if it succeeded")
    p.set_defaults(func=cmd_submit)

    for name, helptext, func in (("report", "verdicts, optimal-HP table and plots of a results folder", cmd_report),
                                 ("export", "the optimal-HP table, or transferred HPs for a target shape", cmd_export)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("target", metavar="RESULTS_DIR", help="results/<sweep>, or just the sweep name")
        p.add_argument("--results", default=DEFAULT_RESULTS, help="results root for a sweep name")
        p.add_argument("--tolerance", type=positive_float("--tolerance"), default=1.0,
                       help="octaves the optimum may move and still 'transfer' (default 1)")
        p.add_argument("--loss", default="final_val_loss", choices=["final_val_loss", "final_train_loss"])
        p.set_defaults(func=func)
    report_p, export_p = sub.choices["report"], sub.choices["export"]
    report_p.add_argument("--json", action="store_true", help="print optima, transfer and regret as one JSON object")
    report_p.add_argument("--tracking-uri", help="also attach the report to this MLflow store")
    report_p.add_argument("--no-mlflow", action="store_true", help="do not attach the report to MLflow")
    export_p.add_argument("--format", required=True, choices=["csv", "md", "latex", "json"])
    export_p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    export_p.add_argument("--target-width", type=positive_int, help="transfer the base optimum to this width")
    export_p.add_argument("--target-depth", type=positive_int, help="... and this depth")

    p = sub.add_parser("sync", help="backfill MLflow from the Parquet rows (idempotent)")
    p.add_argument("target", metavar="RESULTS_DIR")
    p.add_argument("--results", default=DEFAULT_RESULTS)
    p.add_argument("--tracking-uri", help="default MLFLOW_TRACKING_URI or sqlite:///<results>/mlflow.db")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("ui", help="open the MLflow UI on the project's store (127.0.0.1)")
    p.add_argument("--port", type=positive_int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others only if you ask)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results root holding mlflow.db")
    p.add_argument("--sweep", help="print the URL of this sweep's experiment")
    p.add_argument("--tracking-uri")
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .data import DataError
    from .spec import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, SpecError, DataError) as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
