"""The ``completep-sweep`` command line: parse, dispatch to commands.py, map errors to exit codes.

Parsing only: argument types check values (one line naming the argument and the fix, exit 2);
what a command does lives in commands.py.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Callable, Sequence

from .commands import (
    DEFAULT_RESULTS, UsageError, cmd_coord_check, cmd_explain, cmd_export, cmd_report, cmd_run, cmd_status,
    cmd_submit, cmd_sync, cmd_trial, cmd_ui, cmd_validate,
)
from .parameterization import NAMES_HELP, get_parameterization

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
        p.add_argument("--include-stale", action="store_true",
                       help="also use rows of earlier versions of the sweep that differ only in swept values")
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
    from .interrupt import Interrupted, interruptible
    from .runner.cluster import ClusterError
    from .spec import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interruptible():
            return args.func(args)
    except (UsageError, SpecError, ClusterError) as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DataError as e:
        print(f"{parser.prog} {args.command}: error: {e.field}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as e:
        print(f"{parser.prog} {args.command}: interrupted by {e.name}; finished work is kept", file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, SystemError) as e:  # a second Ctrl-C during the clean stop
        cause = e if isinstance(e, KeyboardInterrupt) else (e.__cause__ or e.__context__)
        if not isinstance(cause, (KeyboardInterrupt, Interrupted)):
            raise  # inside Ray's C code an exception surfaces as SystemError; only a stop is ours
        print(f"{parser.prog} {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return getattr(cause, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
