"""``check``: the transfer gate (``transfer_gate.py``) on the built-in model or a user's factory.

Bad input (a ``--model`` that does not import, is missing or is not a five-argument callable, a
``--roles`` file that does not parse or place every tensor, a factory that fails at the base shape)
is one line naming the option and the fix, exit 2, before any check runs. Then one line per check,
``PASS``/``FAIL name: detail``, exit 0 when all pass and 1 otherwise; ``--junit FILE`` for CI.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
import tomllib
from pathlib import Path

from . import EXIT_FAILED, EXIT_OK, UsageError, check_writable

EXAMPLES = [
    "completep-sweep check --model builtin",
    "completep-sweep check --model examples.hf_gpt2:build --parameterization completep",
    "completep-sweep check --model mypkg.train:build --base-width 64 --base-depth 4 --junit check.xml",
    "completep-sweep check --model mypkg.train:build --roles roles.toml --static-only",
]
SIGNATURE = "build(parameterization, width, depth, base_width, base_depth) -> (model, optimizer)"
LAYOUT_KEYS = ("blocks", "branches", "embedding", "final_norm", "unembedding", "output")


def builtin_build(parameterization: str, width: int, depth: int, base_width: int, base_depth: int):
    """This project's model (preset ``tiny``, weight decay 0.1 so that its rule is checked) and AdamW."""
    import torch

    from ..optim import build_optimizer
    from ..presets import preset_config
    from ..train import build_model

    config = preset_config(
        "tiny",
        parameterization=parameterization,
        width=width,
        depth=depth,
        base_width=base_width,
        base_depth=base_depth,
        weight_decay=0.1,
        seed=torch.initial_seed() % 2**31,  # the seed the check set
    )
    model = build_model(config)
    betas = (config.beta1, config.beta2)
    opt = build_optimizer(
        model, config.rules(), lr=config.lr, weight_decay=config.weight_decay, eps=config.eps, betas=betas
    )
    return model, opt


def load_factory(spec: str):
    """``builtin`` or ``pkg.module:function`` (importable from the current folder, as ``python -m``)."""
    if spec == "builtin":
        return builtin_build
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--model: {spec!r} is not pkg.module:function; pass e.g. examples.hf_gpt2:build")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise UsageError(
            f"--model: cannot import {module_name!r} ({type(e).__name__}: {e}); run from the folder that "
            "holds it, or install its package"
        ) from None
    if not hasattr(module, attr):
        raise UsageError(f"--model: module {module_name} has no {attr!r}; name a function {SIGNATURE}")
    build = getattr(module, attr)
    if not callable(build):
        raise UsageError(f"--model: {spec} is a {type(build).__name__}, not a function; name a {SIGNATURE}")
    try:
        inspect.signature(build).bind("completep", 1, 1, 1, 1)
    except TypeError:
        raise UsageError(
            f"--model: {spec} takes {inspect.signature(build)}; it must be {SIGNATURE}"
        ) from None
    except ValueError:
        pass  # no signature to inspect (a builtin): the first build will say
    return build


def load_roles(path: str | None):
    """(roles, layout) from a TOML or JSON file: ``glob = "group"`` lines, or ``[roles]`` (globs) and
    ``[layout]`` (blocks, branches, embedding, final_norm, unembedding, output) tables."""
    if path is None:
        return None, None
    from ..layouts import Layout
    from ..parameterization import GROUPS

    text = _read(path)
    try:
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except ValueError as e:
        raise UsageError(f"--roles: {path} does not parse ({e}); write TOML (or JSON)") from None
    if not isinstance(data, dict):
        raise UsageError(f'--roles: {path} holds a {type(data).__name__}; write glob = "group" lines')
    if not all(isinstance(data.get(k, {}), dict) for k in ("roles", "layout")):
        raise UsageError(f"--roles: {path}: roles and layout must be tables ([roles], [layout])")
    roles = {k: v for k, v in data.items() if k not in ("roles", "layout")}
    roles.update(data.get("roles") or {})
    layout = data.get("layout")
    for glob, group in roles.items():
        if group not in GROUPS:
            raise UsageError(
                f"--roles: {path}: {glob!r} = {group!r} is not a group; use one of {', '.join(GROUPS)}"
            )
    if layout is not None:
        missing = [k for k in LAYOUT_KEYS if k not in layout]
        unknown = sorted(set(layout) - set(LAYOUT_KEYS) - {"name"})
        if missing or unknown or not all(isinstance(layout.get(k, ""), str) for k in ("blocks", "output")):
            raise UsageError(
                f"--roles: {path}: [layout] needs {', '.join(LAYOUT_KEYS)} (missing {missing}, unknown "
                f'{unknown}); e.g. blocks = "model.layers.*", branches = ["attn", "mlp"]'
            )
        listed = {
            k: tuple([v] if isinstance(v, str) else v)
            for k, v in layout.items()
            if k not in ("name", "blocks", "output")
        }
        layout = Layout(**{"name": path, **layout, **listed})
    return roles, layout


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--roles: cannot read {path} ({e}); pass a TOML or JSON file") from None


def probe(gate, spec: str) -> None:
    """One build at the base shape, placed: an error here is the input's (exit 2), not a check's."""
    from ..layouts import classify, detect, preferring

    call = f"{spec}({gate.parameterization!r}, {gate.base_width}, {gate.base_depth}, ...)"
    try:
        model, _ = gate.make(gate.base_width, gate.base_depth)
    except Exception as e:
        raise UsageError(f"--model: {call} raised {type(e).__name__}: {e}; fix the factory") from None
    with preferring(gate.layout):
        try:
            layout = gate.layout or detect(model)
        except ValueError as e:
            raise UsageError(f"--roles: {e}; or pass --roles FILE with a [layout] table") from None
        try:
            classify(model, layout, gate.roles)
        except ValueError as e:
            raise UsageError(f"--roles: {e} in a --roles FILE") from None


def write_junit(path: str, checks, seconds: float) -> None:
    """One testcase per check (a failed one with a <failure> holding its detail)."""
    import xml.etree.ElementTree as ET

    failures = sum(not c.passed for c in checks)
    suite = ET.Element(
        "testsuite",
        name="completep-sweep check",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        time=f"{seconds:.3f}",
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname="completep-sweep.check", name=c.name)
        case.set("time", f"{c.seconds:.3f}")
        if c.passed:
            ET.SubElement(case, "system-out").text = c.detail
        else:
            ET.SubElement(case, "failure", message=c.detail).text = c.line()
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def cmd_check(args) -> int:
    build = load_factory(args.model)
    roles, layout = load_roles(args.roles)
    if args.junit:
        check_writable(Path(args.junit).resolve().parent, "--junit")
    import torch

    from ..transfer_gate import Check, Gate, run_checks

    torch.set_num_threads(args.threads)
    gate = Gate(build, args.parameterization, args.base_width, args.base_depth, roles, layout)
    probe(gate, args.model)
    t0, checks = time.perf_counter(), []

    def report(check) -> None:
        checks.append(check)
        print(check.line(), flush=True)

    try:
        run_checks(gate, static_only=args.static_only, report=report)
    except Exception as e:  # the factory failed at another shape: the gate fails, with the reason
        report(Check("check stopped", False, f"{type(e).__name__}: {e}"))
    seconds = time.perf_counter() - t0
    failed = sum(not c.passed for c in checks)
    summary = f"{len(checks) - failed} of {len(checks)} checks passed in {seconds:.0f} s"
    print(f"{summary} ({args.model}, {gate.parameterization})")
    if args.junit:
        write_junit(args.junit, checks, seconds)
    return EXIT_FAILED if failed else EXIT_OK
