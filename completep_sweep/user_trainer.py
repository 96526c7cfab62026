"""Your trainer in a sweep: a Python function (``trainer = "pkg.module:func"``) or a command
template (``command = ["python", "train.py", "--lr={lr}"]``) trains each trial instead of the
built-in model. Checked on the driver before any compute (``trainer_fields``: exit 2 naming the
field); run on a worker into the same ``TrialResult`` the built-in trainer returns
(``run_user_trial``). A failure of the user's code raises ``TrainerError``, whose text (the
traceback, or the command's stderr tail) becomes the trial's error row after its retries, as any
worker error does. No torch, no Ray: the user's code brings its own framework.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import math
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from .errors import SpecError
from .parameterization import RULES_VERSION
from .trial import CurvePoint, TrialConfig, TrialResult

ENTRY_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
REPORT_KEYS = ("step", "train_loss", "val_loss", "tokens", "lr")
RESULT_KEYS = ("final_val_loss", "final_train_loss", "n_params", "flops", "status")
PLACEHOLDERS = frozenset((*TrialConfig.field_names(), "trial_id"))
Report = Callable[[Mapping[str, Any]], None]


class TrainerError(RuntimeError):
    """The user's trainer failed on a worker; the message is what the trial's error row keeps.
    Our own class, so the error unpickles on the driver even when the user's exception would not."""


class _Bad(ValueError):
    """A trainer that cannot be loaded; the caller says where (sweep file or worker)."""


# ---------------------------------------------------------------- on the driver, before any compute


def trainer_fields(spec: Any, source: str, recorded: Mapping | None) -> tuple[dict[str, str], dict]:
    """The TrialConfig fields naming the sweep file's trainer, and what ``run`` records of it
    (``Sweep.resolved["trainer"]``: its version and where the workers import it from).

    ``recorded``: what a run of this very file recorded; its version is taken as it was, so a reader
    of the results (``report``) neither imports the user's code nor turns rows stale when the
    installed version moved on. Otherwise the trainer is loaded and checked now: SpecError names
    ``trainer`` or ``command`` and the fix.
    """
    if spec.trainer is None and spec.command is None:
        return {}, {}  # the built-in trainer: no field changes, so every earlier id stays the same
    if spec.trainer is not None and spec.command is not None:
        raise SpecError(
            f"{source}: trainer, command: both are set; keep one (trainer for a Python function, "
            "command for a script)"
        )
    paths = import_paths(source)
    version = (recorded or {}).get("version")
    if spec.trainer is not None:
        if version is None:
            try:
                load_entry(spec.trainer, paths)
            except _Bad as e:
                raise SpecError(f"{source}: trainer: {e}") from None
            version = trainer_version(spec.trainer)
        fields = {"trainer": spec.trainer, "trainer_version": version}
    else:
        if version is None:
            check_command(spec.command, source)
        fields, version = {"command": json.dumps(spec.command)}, ""  # the template is its own version
    return fields, {"trainer": {"version": version, "path": paths}}


def import_paths(source: str) -> list[str]:
    """Where the user's module is looked for, as for a script: the sweep file's folder, then the
    folder ``run`` was started from (also the command's working directory: the last entry)."""
    here = os.getcwd()
    folder = str(Path(source).resolve().parent) if Path(source).is_file() else here
    return list(dict.fromkeys((folder, here)))


def load_entry(entry: str, paths: Sequence[str] = ()) -> Callable:
    """The function ``entry`` ("pkg.module:func") names; _Bad says what is wrong and the fix."""
    if not ENTRY_RE.fullmatch(entry):
        raise _Bad(f'{entry!r} is not "module:function"; write trainer = "pkg.module:func"')
    module_name, _, attr = entry.partition(":")
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - whatever the user's module raises while importing
        first = (str(e).splitlines() or [""])[0]
        raise _Bad(
            f"module {module_name!r} does not import ({type(e).__name__}: {first}); put it beside the "
            "sweep file or in the folder you run from, or install its package"
        ) from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise _Bad(
                f"module {module_name!r} has no {attr!r}; name a function defined in "
                f"{getattr(module, '__file__', module_name)}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise _Bad(
            f"{entry!r} is not callable (it is of type {type(target).__name__}); define def "
            f"{attr}(config, report)"
        )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # nothing to inspect (a builtin): it is called as it is
        return target
    try:
        signature.bind(None, None)
    except TypeError:
        raise _Bad(
            f"{entry!r} cannot be called as {attr}(config, report) (its signature is {signature}); "
            f"define it as def {attr}(config, report)"
        ) from None
    return target


def trainer_version(entry: str) -> str:
    """``__version__`` of the entry point's top-level package or module, else the version of the
    installed distribution that provides it, else "0". Part of every trial id: a new version of
    the user's code re-runs the sweep, the same version finds its rows."""
    top = entry.partition(":")[0].split(".")[0]
    version = getattr(sys.modules.get(top) or importlib.import_module(top), "__version__", None)
    if version:
        return str(version)
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "0"


def check_command(command: list[str], source: str) -> None:
    """A command template that can run: a program on PATH, placeholders that are config fields."""
    if not command or not command[0]:
        raise SpecError(
            f'{source}: command: empty; give the program and its arguments, e.g. command = ["python", '
            '"train.py", "--lr={lr}"]'
        )
    for arg in command:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(arg) if name is not None]
        except ValueError as e:
            raise SpecError(
                f"{source}: command: {arg!r}: {e}; write {{{{ and }}}} for literal braces"
            ) from None
        for name in names:
            if re.split(r"[.\[]", name)[0] not in PLACEHOLDERS:
                raise SpecError(
                    f"{source}: command: {arg!r}: {{{name}}} is not a config field; use one of "
                    f"{', '.join(sorted(PLACEHOLDERS))} (or {{{{ }}}} for literal braces)"
                )
    if shutil.which(command[0]) is None:
        raise SpecError(
            f"{source}: command: {command[0]!r} is not found on PATH; give its full path, or install it"
        )


# ---------------------------------------------------------------- on the worker


def run_user_trial(
    config: TrialConfig,
    on_eval: Callable[[CurvePoint], None] | None = None,
    *,
    device: str = "cpu",
    threads: int = 1,
    paths: Sequence[str] = (),
) -> TrialResult:
    """Train one trial with the user's function or command; raises TrainerError when it fails."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    curve: list[CurvePoint] = []

    def report(point: Mapping[str, Any]) -> None:
        curve.append(_curve_point(point, config))
        if on_eval is not None:
            on_eval(curve[-1])

    # What the user's code gets: every field, Table 1 resolved per group, the id, where it runs.
    given = {**config.to_dict(), "rules": config.rules().to_dict(), "trial_id": config.trial_id}
    given.update(device=device, threads=threads)
    if config.trainer:
        try:
            train = load_entry(config.trainer, paths)
        except _Bad as e:
            raise TrainerError(f"trainer: {e}") from None
        try:
            out = train(given, report)
        except TrainerError:
            raise
        except (Exception, SystemExit):  # the user's bug is this trial's error row, never the sweep's
            raise TrainerError(f"trainer {config.trainer} raised:\n{traceback.format_exc()}") from None
    else:
        out = _run_command(config, given, report, paths[-1] if paths else None)
    return _result(config, out, curve, time.perf_counter() - t0, device, started_at)


def _number(value: Any, what: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (str, bytes, bool)):
        raise TrainerError(f"{what} must be a number (got {value!r})")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TrainerError(f"{what} must be a number (got {value!r})") from None


def _curve_point(point: Any, config: TrialConfig) -> CurvePoint:
    if not isinstance(point, Mapping):
        raise TrainerError(f"report() takes a dict such as {{'step': 100, 'val_loss': 3.2}} (got {point!r})")
    unknown = sorted(set(point) - set(REPORT_KEYS))
    if unknown:
        raise TrainerError(f"report(): unknown key(s) {unknown}; use {', '.join(REPORT_KEYS)}")
    step = _number(point.get("step"), "report(): step")
    if not (math.isfinite(step) and step.is_integer() and step >= 0):
        raise TrainerError(f"report(): needs an integer step >= 0, e.g. {{'step': 100}} (got {point!r})")
    tokens = point.get("tokens")
    return CurvePoint(
        step=int(step),
        # Like the built-in trainer's curve: the tokens seen by then, unless the trainer says otherwise.
        tokens=int(step) * config.batch_size * config.seq_len if tokens is None else int(tokens),
        train_loss=_number(point.get("train_loss"), "report(): train_loss"),
        val_loss=_number(point.get("val_loss"), "report(): val_loss"),
        lr=_number(point.get("lr"), "report(): lr"),
    )


def _run_command(config: TrialConfig, given: dict, report: Report, cwd: str | None) -> Any:
    """Run the filled-in template; JSON lines with a "step" are curve points, the last line the result."""
    values = {**config.to_dict(), "trial_id": config.trial_id}
    try:
        argv = [arg.format_map(values) for arg in json.loads(config.command)]
    except (KeyError, ValueError, IndexError, AttributeError) as e:
        raise TrainerError(f"command: cannot fill in {config.command} ({type(e).__name__}: {e})") from None
    # The whole config (rules included) for a script that wants more than its placeholders.
    env = {**os.environ, "COMPLETEP_TRIAL": json.dumps(given)}
    where = cwd if cwd and os.path.isdir(cwd) else None  # another node may lack the driver's folder
    last = None
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                argv, cwd=where, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        except OSError as e:
            raise TrainerError(f"command: cannot start {argv[0]!r} ({e.strerror or e})") from None
        try:
            for line in proc.stdout:
                if line.strip():
                    if last is not None:  # not the last line: a curve point, or the script's own output
                        _maybe_point(last, report)
                    last = line.strip()
        except BaseException:
            proc.kill()
            raise
        finally:
            code = proc.wait()
        if code != 0:
            stderr.seek(0)
            tail = stderr.read().decode(errors="replace")[-1500:]
            raise TrainerError(
                f"command {' '.join(argv)} exited with status {code}; its stderr ends:\n{tail}"
            )
    try:
        return json.loads(last or "")
    except ValueError:
        raise TrainerError(
            f"command {' '.join(argv)}: its last output line is not JSON ({(last or '')[-300:]!r}); end "
            'the script with print(json.dumps({"final_val_loss": loss}))'
        ) from None


def _maybe_point(line: str, report: Report) -> None:
    try:
        point = json.loads(line) if line.startswith("{") else None
    except ValueError:
        return  # the script's own output
    if isinstance(point, dict) and "step" in point:
        report(point)


def _result(
    config: TrialConfig, out: Any, curve: list[CurvePoint], wall: float, device: str, started_at: str
) -> TrialResult:
    """The user's returned dict as the trial's row; a non-finite loss or status "diverged" is a
    diverged row (divergence is data), anything malformed a TrainerError."""
    who = f"trainer {config.trainer}" if config.trainer else "command"
    if not isinstance(out, Mapping):
        raise TrainerError(f"{who} returned {out!r}; return a dict such as {{'final_val_loss': 3.1}}")
    unknown = sorted(set(out) - set(RESULT_KEYS))
    if unknown or "final_val_loss" not in out:
        what = f"unknown key(s) {unknown}" if unknown else "no final_val_loss"
        raise TrainerError(
            f"{who} returned {what}; return final_val_loss and optionally {', '.join(RESULT_KEYS[1:])}"
        )
    status = out.get("status", "ok")
    if status not in ("ok", "diverged"):
        raise TrainerError(f'{who} returned status {status!r}; use "ok" or "diverged"')
    val = _number(out["final_val_loss"], f"{who}: final_val_loss")
    last_train = curve[-1].train_loss if curve else math.nan
    train = _number(out.get("final_train_loss", last_train), f"{who}: final_train_loss")
    diverged = status == "diverged" or not math.isfinite(val)
    steps = max((p.step for p in curve), default=0) if diverged else config.steps
    flops = _number(out.get("flops", config.flops * steps / config.steps), f"{who}: flops")
    n_params = _number(out.get("n_params", 0), f"{who}: n_params")
    return TrialResult(
        config=config,
        status="diverged" if diverged else "ok",
        final_train_loss=train if math.isfinite(train) else math.nan,
        final_val_loss=val if math.isfinite(val) else math.nan,
        diverged_at_step=steps if diverged else None,
        steps_done=steps,
        clip_fraction=0.0,
        flops=flops,
        n_params=int(n_params) if math.isfinite(n_params) else 0,
        wall_time_s=wall,
        device=device,
        started_at=started_at,
        code_version=f"{__version__}+{RULES_VERSION} {who} {config.trainer_version}".strip(),
        curve=tuple(curve),
    )
