"""The command line's vocabulary: argument types that check a value (one line naming the argument
and the fix, exit 2), the help formatter, and the examples each command's --help ends with."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from .parameterization import get_parameterization

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


def port_number(text: str) -> int:
    """A TCP port, 1-65535: argparse then refuses 0 or 70000 in one line, before anything starts."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 1-65535 (got {value})")
    return value


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
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 2,4,8 (got {text!r})"
        ) from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two positive integers like 2,4,8 (got {text!r})")
    return values


def name_list(text: str) -> list[str]:
    return [parameterization_name(v.strip()) for v in text.split(",") if v.strip()]


# ---------------------------------------------------------------- parser
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (none for flags and unset options, whose help says what
    happens instead); examples in the epilog kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "default" not in text
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


EXAMPLES = {  # command -> the examples printed at the end of its --help
    "explain": [
        "completep-sweep explain --parameterization completep --width 2048 --depth 64",
        "completep-sweep explain --model tiny --parameterization mup --width 128 --depth 8 --json",
    ],
    "trial": [
        "completep-sweep trial --parameterization completep --width 64 --depth 8 --lr 0.0078125 --steps 200"
    ],
    "coord-check": [
        "completep-sweep coord-check --axis depth --values 2,4,8,16 --plot coord-depth.png",
        "completep-sweep coord-check --axis width --parameterizations sp,mup --json",
    ],
    "lazy-check": ["completep-sweep lazy-check", "completep-sweep lazy-check --values 2,8,32 --json"],
    "validate": ["completep-sweep validate sweeps/depth-transfer-demo.toml"],
    "run": [
        "completep-sweep run sweeps/depth-transfer-demo.toml",
        "completep-sweep run sweeps/cpu-depth-study.toml --max-concurrent 1 --no-mlflow",
        "completep-sweep run sweeps/depth-transfer-demo.toml --address 10.0.0.1:6379",
    ],
    "status": [
        "completep-sweep status depth-transfer-demo",
        "completep-sweep status results/cpu-depth-study --watch",
    ],
    "submit": ["completep-sweep submit sweeps/cpu-depth-study.toml --address http://head-node:8265 --wait"],
    "report": [
        "completep-sweep report depth-transfer-demo",
        "completep-sweep report depth-transfer-demo --json",
        "completep-sweep report results/cpu-depth-study --regret-tolerance 0.5",
    ],
    "export": [
        "completep-sweep export depth-transfer-demo --target-depth 64",
        "completep-sweep export depth-transfer-demo --format toml --target-depth 64",
        (
            "completep-sweep export depth-transfer-demo --format csv "
            "--target-width 2048 --target-depth 64 -o hps.csv"
        ),
    ],
    "sync": ["completep-sweep sync depth-transfer-demo"],
    "ui": ["completep-sweep ui", "completep-sweep ui --sweep cpu-depth-study --port 5001"],
}


def add_report_and_export_args(report_p, export_p) -> None:
    """The options of ``report`` and ``export`` beyond the analysis options they share."""
    report_p.add_argument(
        "--json",
        action="store_true",
        help="print recommendations, optima, verdicts and regret as one JSON object",
    )
    report_p.add_argument(
        "--mlflow",
        action="store_true",
        help="also attach this report to MLflow (the store in --results, created if none; `run` "
        "mirrors the trials there itself): without it report writes only SWEEP/report/",
    )
    report_p.add_argument("--tracking-uri", help="attach the report to this MLflow store (implies --mlflow)")
    report_p.add_argument(
        "--no-mlflow", action="store_true", help=argparse.SUPPRESS
    )  # the old default's opt-out
    export_p.add_argument(
        "--format",
        default="md",
        choices=["csv", "md", "latex", "json", "toml"],
        help="table format; toml: the ready-to-paste block for a target shape",
    )
    export_p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    export_p.add_argument(
        "--parameterization",
        type=parameterization_name,
        help="the parameterization of the target table or paste block (default: every one in the "
        "table; the paste block: the last in the paper's order, e.g. completep)",
    )
    export_p.add_argument(
        "--target-depth",
        type=positive_int,
        help="effective per-group HPs at this depth (width: the tuned width unless given)",
    )
    export_p.add_argument(
        "--target-width",
        type=positive_int,
        help="effective per-group HPs at this width (depth: the tuned depth unless given)",
    )
