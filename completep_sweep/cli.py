"""The ``completep-sweep`` command line: parse, dispatch to commands/, map errors to exit codes.

Parsing only: argument types (cli_args.py) check values, one line naming the argument and the fix,
exit 2; what a command does lives in commands/.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .cli_args import (
    EXAMPLES,
    EXIT_BAD_INPUT,
    HelpFormatter,
    Parser,
    add_report_and_export_args,
    device_name,
    int_list,
    name_list,
    non_negative_int,
    parameterization_name,
    port_number,
    positive_float,
    positive_int,
)
from .commands import (
    DEFAULT_RESULTS,
    EXIT_ENVIRONMENT,
    EnvironmentFailure,
    UsageError,
    cmd_check,
    cmd_coord_check,
    cmd_explain,
    cmd_export,
    cmd_lazy_check,
    cmd_report,
    cmd_run,
    cmd_status,
    cmd_submit,
    cmd_sync,
    cmd_trial,
    cmd_ui,
    cmd_validate,
)
from .commands.check import EXAMPLES as CHECK_EXAMPLES
from .parameterization import NAMES_HELP

SWEEP_HELP = "a sweep name (under --results), or its folder: results/<sweep> or a URI"


def build_parser() -> Parser:
    from . import __version__

    parser = Parser(
        prog="completep-sweep",
        formatter_class=HelpFormatter,
        description="Hyperparameter-transfer sweeps for SP, µP, α=0.5 and CompleteP: does the "
        "optimal learning rate stay put as depth grows?",
        epilog="start here:\n  make sweep                      # the demo, end to end\n"
        "  completep-sweep report depth-transfer-demo\n"
        "  completep-sweep <command> --help  # options, defaults and examples",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    def command(name: str, helptext: str, func, examples=None) -> Parser:
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples or EXAMPLES[name])
        q = sub.add_parser(
            name,
            help=helptext,
            description=helptext[0].upper() + helptext[1:] + ".",
            epilog=epilog,
            formatter_class=HelpFormatter,
        )
        q.set_defaults(func=func)
        return q

    results_help = "results root holding one folder per sweep"
    p = command("explain", "print every parameter group's multipliers at a shape", cmd_explain)
    p.add_argument(
        "--model", default="tiny", help="model preset in models/: gives the base shape and HP defaults"
    )
    p.add_argument("--parameterization", required=True, type=parameterization_name, help=NAMES_HELP)
    p.add_argument(
        "--width", required=True, type=positive_int, help="model width (a multiple of the preset's head_dim)"
    )
    p.add_argument("--depth", required=True, type=positive_int, help="number of transformer blocks")
    p.add_argument(
        "--base-width", type=positive_int, help="base width the HPs were tuned at (default: the preset's)"
    )
    p.add_argument(
        "--base-depth", type=positive_int, help="base depth the HPs were tuned at (default: the preset's)"
    )
    p.add_argument(
        "--lr", type=positive_float("--lr"), help="base LR for the effective values (default: the preset's)"
    )
    p.add_argument(
        "--init-std", type=positive_float("--init-std"), help="base init std (default: the preset's)"
    )
    p.add_argument("--weight-decay", type=float, help="base AdamW weight decay (default: the preset's)")
    p.add_argument("--eps", type=positive_float("--eps"), help="base AdamW epsilon (default: the preset's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("trial", "train one trial and print its result", cmd_trial)
    p.add_argument("--model", default="tiny", help="model preset in models/")
    p.add_argument("--parameterization", required=True, type=parameterization_name, help=NAMES_HELP)
    p.add_argument(
        "--width", required=True, type=positive_int, help="model width (a multiple of the preset's head_dim)"
    )
    p.add_argument("--depth", required=True, type=positive_int, help="number of transformer blocks")
    p.add_argument("--base-width", type=positive_int, help="override the preset's base width")
    p.add_argument("--base-depth", type=positive_int, help="override the preset's base depth")
    p.add_argument(
        "--lr", required=True, type=positive_float("--lr"), help="base learning rate (e.g. 0.0078125 = 2^-7)"
    )
    p.add_argument(
        "--init-std", type=positive_float("--init-std"), help="base init std (default: the preset's)"
    )
    p.add_argument("--steps", type=positive_int, help="optimizer steps (default: the preset's)")
    p.add_argument(
        "--warmup-steps", type=non_negative_int, help="linear warmup steps (default: the preset's)"
    )
    p.add_argument("--batch-size", type=positive_int, help="sequences per step (default: the preset's)")
    p.add_argument(
        "--eval-interval", type=positive_int, help="steps between evaluations (default: the preset's)"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="init and data-order seed")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other [train] or [model_overrides] key of a sweep file, e.g. --set weight_decay=0.1 "
        "--set seq_len=128 (repeatable; VALUE as in TOML)",
    )
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads")
    p.add_argument("--json", action="store_true", help="print the TrialResult row as JSON")

    p = command(
        "coord-check",
        "coordinate check: activation sizes after a few steps, over depth or width",
        cmd_coord_check,
    )
    p.add_argument("--model", default="tiny", help="model preset in models/")
    p.add_argument("--axis", required=True, choices=["depth", "width"], help="what varies")
    p.add_argument(
        "--values", type=int_list, help="e.g. 2,4,8,16,32 (default: depths 2..32, or 1-8x base width)"
    )
    p.add_argument("--steps", type=positive_int, default=10, help="training steps before measuring")
    p.add_argument("--lr", type=positive_float("--lr"), default=1e-3, help="base learning rate of the steps")
    p.add_argument(
        "--parameterizations",
        type=name_list,
        default=["sp", "mup", "alpha0.5", "completep"],
        help="comma-separated: " + NAMES_HELP,
    )
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print slopes and pass/fail as JSON")
    p.add_argument("--plot", help="write the figure to this path (.png; an .svg beside it)")

    p = command(
        "lazy-check",
        "laziness check (paper Fig. 6): a block's distance from its linearization "
        "after one step, against depth",
        cmd_lazy_check,
    )
    p.add_argument("--model", default="tiny", help="model preset in models/")
    p.add_argument("--values", type=int_list, default=[2, 4, 8, 16, 32], help="depths")
    p.add_argument("--lr", type=positive_float("--lr"), default=2.0**-7, help="base lr of the one step")
    p.add_argument(
        "--parameterizations",
        type=name_list,
        default=["sp", "mup", "alpha0.5", "completep"],
        help="comma-separated: " + NAMES_HELP,
    )
    p.add_argument("--json", action="store_true", help="print slopes, expectations and pass/fail as JSON")

    p = command(
        "check",
        "transfer gate: check a model and its optimizer against Table 1, statically and by measurement",
        cmd_check,
        CHECK_EXAMPLES,
    )
    p.add_argument("--model", required=True, help="builtin, or pkg.module:build returning (model, optimizer)")
    p.add_argument("--parameterization", default="completep", type=parameterization_name, help=NAMES_HELP)
    p.add_argument("--base-width", type=positive_int, default=32, help="the base shape's width")
    p.add_argument("--base-depth", type=positive_int, default=2, help="the base shape's depth")
    p.add_argument(
        "--roles",
        metavar="FILE",
        help="TOML/JSON: tensor-name globs -> groups, and a [layout] for other models",
    )
    p.add_argument("--static-only", action="store_true", help="only the checks at init (seconds)")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML file, one testcase per check")

    p = command("validate", "check a sweep file; print trials, pending and an estimate", cmd_validate)
    p.add_argument("spec", metavar="SPEC", help="sweep file, e.g. sweeps/depth-transfer-demo.toml")
    p.add_argument("--results", default=DEFAULT_RESULTS, help=results_help)

    p = command("run", "run or resume a sweep (only trials without a row run)", cmd_run)
    p.add_argument("spec", metavar="SPEC", help="sweep file, e.g. sweeps/depth-transfer-demo.toml")
    p.add_argument("--results", default=DEFAULT_RESULTS, help=results_help)
    p.add_argument("--address", help="Ray cluster address (default: start Ray in this process)")
    p.add_argument(
        "--max-concurrent", type=positive_int, help="at most N trials at once (default: as CPUs allow)"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///<results>/mlflow.db)",
    )
    p.add_argument(
        "--no-mlflow", action="store_true", help="do not log to MLflow (rows are in Parquet anyway)"
    )

    p = command("status", "counts by status and what is pending; --watch: live running trials", cmd_status)
    p.add_argument("target", metavar="SWEEP", help=SWEEP_HELP)
    p.add_argument("--results", default=DEFAULT_RESULTS, help=results_help)
    p.add_argument(
        "--watch",
        action="store_true",
        help="refresh a table of running and latest finished trials "
        "until the search is complete (Ctrl-C stops watching)",
    )
    p.add_argument(
        "--interval", type=positive_float("--interval"), default=5.0, help="seconds between refreshes"
    )

    p = command("submit", "submit the run to a Ray cluster as a Ray Job", cmd_submit)
    p.add_argument("spec", metavar="SPEC", help="sweep file, e.g. sweeps/cpu-depth-study.toml")
    p.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HOST:8265")
    p.add_argument(
        "--results", default="~/completep-sweep/results", help="results root on the cluster's head node"
    )
    p.add_argument("--max-concurrent", type=positive_int, help="at most N trials at once")
    p.add_argument("--attempt", type=positive_int, default=1, help="bump to resubmit after a failed job")
    p.add_argument(
        "--wait", action="store_true", help="follow the job until it ends; exit 0 only if it succeeded"
    )

    for name, helptext, func in (
        ("report", "recommendations, verdicts, optimal-HP tables and plots of a sweep", cmd_report),
        ("export", "the optimal-HP table, or the HPs to use at a target shape", cmd_export),
    ):
        p = command(name, helptext, func)
        p.add_argument("target", metavar="SWEEP", help=SWEEP_HELP)
        p.add_argument("--results", default=DEFAULT_RESULTS, help=results_help)
        p.add_argument(
            "--regret-tolerance",
            dest="tolerance",
            type=positive_float("--regret-tolerance"),
            default=1.0,
            help="percent of loss that keeping the base optimum may cost at every tested depth and still "
            "'keep' (default 1)",
        )
        p.add_argument(
            "--loss",
            default="final_val_loss",
            choices=["final_val_loss", "final_train_loss"],
            help="the loss the optima minimize",
        )
        p.add_argument(
            "--include-stale",
            action="store_true",
            help="also use rows of earlier versions of the sweep that differ only in swept values",
        )
    report_p, export_p = sub.choices["report"], sub.choices["export"]
    add_report_and_export_args(report_p, export_p)

    p = command("sync", "backfill MLflow from the Parquet rows: runs, curves, the saved chart view", cmd_sync)
    p.add_argument("target", metavar="SWEEP", help=SWEEP_HELP)
    p.add_argument("--results", default=DEFAULT_RESULTS, help=results_help)
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///<results>/mlflow.db)",
    )

    p = command("ui", "serve the MLflow UI on the project's store and print the transfer-curves URL", cmd_ui)
    p.add_argument("--port", type=port_number, default=5000, help="port to serve on")
    p.add_argument("--host", default="127.0.0.1", help="bind address (others only if you ask)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results root holding mlflow.db")
    p.add_argument("--sweep", help="open this sweep's experiment (default: the latest synced sweep)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<results>/mlflow.db)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import FieldError, SpecError
    from .interrupt import Interrupted, interruptible
    from .runner.cluster import ClusterError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interruptible():
            return args.func(args)
    except (UsageError, SpecError, ClusterError) as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EnvironmentFailure as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BrokenPipeError:  # `validate ... | head`: the reader left; nothing to say, nothing failed
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not raise again
        return 0
    except FieldError as e:  # a data file, a shape or a config value: the field, then the fix
        print(f"{parser.prog} {args.command}: error: {e.field}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as e:
        print(
            f"{parser.prog} {args.command}: interrupted by {e.name}; finished work is kept", file=sys.stderr
        )
        return e.exit_code
    except (KeyboardInterrupt, SystemError) as e:  # a second Ctrl-C during the clean stop
        cause = e if isinstance(e, KeyboardInterrupt) else (e.__cause__ or e.__context__)
        if not isinstance(cause, (KeyboardInterrupt, Interrupted)):
            raise  # inside Ray's C code an exception surfaces as SystemError; only a stop is ours
        print(f"{parser.prog} {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return getattr(cause, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
