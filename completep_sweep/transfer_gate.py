"""``completep-sweep check``: does a codebase's model and optimizer follow Table 1? One PASS/FAIL each.

``build(parameterization, width, depth, base_width, base_depth)`` returns ``(model, optimizer)`` made
by your own code. The checks (``Check``):
- ``static <group>`` per Table 1 group: built at the base shape, 2x width, 4x depth and both, each
  tensor's lr, eps, weight decay (from the param group holding it) and measured init std, as a
  ratio to the same tensor at the base shape (a block's tensor: the base blocks'), against Table 1;
- ``residual multiplier``: the mean rms of what a block adds to the residual stream at init, 4x
  depth over base depth (F(LN(h)) has a depth-free size at init) against m_L^-alpha, wherever the
  code applies it; ``output multiplier``: logits over final-norm output x unembedding (exactly the
  multiplier), 2x width over base width, against m_N^-1;
- ``width/depth coord check`` (``model_check.coord_slope``, ``coord_check.expectation``) and
  ``laziness`` (``model_check.lazy_slope``, ``lazy_check.expected_slope`` ± TOLERANCE), every group's
  lr rescaled by one factor so the base lr is the one they were calibrated at (1e-3, 2^-7);
- ``lr bracket``: your lr x 1/2, 1, 2, BRACKET_STEPS steps at the base depth and 4x: PASS when the
  best moves by at most one point or keeping it costs at most REGRET at 4x (finite at both depths).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np
import torch
import torch.nn.functional as F

from . import layouts
from .coord_check import expectation
from .data import BUILTIN, load_source
from .layouts import WEIGHT, Layout, block_names, classify, detect
from .lazy_check import TOLERANCE, expected_slope
from .model_check import _batches, _vocab, coord_slope, lazy_slope, logits_of
from .parameterization import DECAYED_GROUPS, GROUPS, INITIALIZED_GROUPS, scaling_rules

Factory = Callable[[str, int, int, int, int], tuple[torch.nn.Module, torch.optim.Optimizer]]
WIDTH_X, DEPTH_X = 2, 4  # the larger builds of the static checks: 2x width, 4x depth, both
# Relative tolerances: optimizer settings (set, not drawn), a measured init std, the residual
# multiplier (block increments of random branches), the output multiplier (exact up to rounding).
HP_TOLERANCE, INIT_TOLERANCE, RESIDUAL_TOLERANCE, OUTPUT_TOLERANCE = 0.01, 0.15, 0.25, 0.05
COORD_LR, LAZY_LR = 1e-3, 2.0**-7  # the base lrs coord_check and lazy_check were calibrated at
SCALES, SEEDS = (1, 2, 4, 8), (0, 1)  # the dynamic checks' shapes (x base) and seeds
BRACKET, BRACKET_STEPS, REGRET = (0.5, 1.0, 2.0), 120, 0.02


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Gate:
    """What is checked: a factory, the parameterization it claims, its base shape, how to place tensors."""

    build: Factory
    parameterization: str = "completep"
    base_width: int = 32
    base_depth: int = 2
    roles: Mapping[str, str] | None = None
    layout: Layout | None = None

    def make(self, width: int, depth: int, seed: int = 0, lr_factor: float = 1.0):
        """Build (seeded) at a shape; every param group's lr times ``lr_factor`` (ratios kept)."""
        torch.manual_seed(seed)
        built = self.build(self.parameterization, width, depth, self.base_width, self.base_depth)
        model, opt = built if isinstance(built, tuple) and len(built) == 2 else (built, None)
        if not isinstance(model, torch.nn.Module) or not hasattr(opt, "param_groups"):
            got = ", ".join(type(v).__name__ for v in (built if isinstance(built, tuple) else [built]))
            raise TypeError(
                f"it returned ({got}); return (model, optimizer), a torch.nn.Module and its optimizer"
            )
        for group in opt.param_groups:
            group["lr"] *= lr_factor
        return model, opt

    def factory(self, lr_factor: float = 1.0):
        """``model_check``'s three-argument build, the lr scaled by ``lr_factor``."""
        return lambda p, width, depth: self.make(width, depth, seed=torch.initial_seed(), lr_factor=lr_factor)

    def rules(self, width: int, depth: int):
        p, bw, bd = self.parameterization, self.base_width, self.base_depth
        return scaling_rules(p, width=width, depth=depth, base_width=bw, base_depth=bd)


def tensor_table(model, opt, layout: Layout, roles=None) -> dict[str, dict]:
    """Per tensor: group, kind, key (blocks' glob for block index), lr, eps, weight decay, init std."""
    groups = classify(model, layout, roles)
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    blocks = block_names(model, layout)
    params = dict(model.named_parameters())
    table = {}
    for name, (group, kind) in groups.items():
        block = next((b for b in blocks if name.startswith(b + ".")), None)
        held, p = by_id.get(id(params[name])), params[name].detach().float()
        hps = {q: (held or {}).get(q) for q in ("lr", "eps", "weight_decay")}
        key = layout.blocks + name[len(block) :] if block else name
        std = float(p.std()) if kind == WEIGHT and p.numel() > 1 else None
        table[name] = {"group": group, "kind": kind, "key": key, **hps, "init std": std, "held": bool(held)}
    return table


def _expected(gate: Gate, group: str, width: int, depth: int) -> dict[str, float | None]:
    """Table 1's ratio to the base shape per quantity (a group Table 1 never decays: no rule, 1)."""
    r = gate.rules(width, depth).groups[group]
    wd = r.weight_decay_mult if group in DECAYED_GROUPS else 1.0
    init = r.init_std_mult if group in INITIALIZED_GROUPS else None
    return {"lr": r.lr_mult, "eps": r.eps_mult, "weight_decay": wd, "init std": init}


def _ratio(large: float, base: float) -> float:
    return large / base if base else (1.0 if large == 0 else math.inf)


def static_checks(gate: Gate, layout: Layout) -> list[Check]:
    """One check per Table 1 group present: every tensor's lr, ε, weight decay and init std ratios."""
    t0 = time.perf_counter()
    bw, bd = gate.base_width, gate.base_depth
    base = tensor_table(*gate.make(bw, bd), layout, gate.roles)
    by_key: dict[str, list[dict]] = {}
    for row in base.values():
        by_key.setdefault(row["key"], []).append(row)
    problems: dict[str, dict[tuple, list]] = {g: {} for g in GROUPS}  # (quantity, shape) -> tensors
    counts = dict.fromkeys(GROUPS, 0)
    for width, depth in ((WIDTH_X * bw, bd), (bw, DEPTH_X * bd), (WIDTH_X * bw, DEPTH_X * bd)):
        for name, row in tensor_table(*gate.make(width, depth), layout, gate.roles).items():
            group, counts[row["group"]] = row["group"], counts[row["group"]] + 1
            if not row["held"]:
                problems[group].setdefault(("optimizer", width, depth), []).append((name, None, None))
                continue
            for quantity, want in _expected(gate, group, width, depth).items():
                values = [r[quantity] for r in by_key.get(row["key"], []) if r[quantity] is not None]
                if want is None or row[quantity] is None or not values:
                    continue
                got = _ratio(row[quantity], float(np.mean(values)))
                tol = INIT_TOLERANCE if quantity == "init std" else HP_TOLERANCE
                if not abs(got - want) <= tol * abs(want):
                    problems[group].setdefault((quantity, width, depth), []).append((name, got, want))
    seconds = (time.perf_counter() - t0) / max(1, len({r["group"] for r in base.values()}))
    checks = []
    for group in (g for g in GROUPS if counts[g]):
        issues = []
        for (quantity, width, depth), [(name, got, want), *rest] in problems[group].items():
            where = f"at {width}x{depth}, {name}" + (f" and {len(rest)} more" if rest else "")
            if quantity == "optimizer":
                issues.append(f"in no optimizer param group {where}")
            else:
                issues.append(f"{quantity} x{got:.3g} (Table 1: x{want:.3g}) {where}")
        detail = "; ".join(issues) or (
            f"lr, eps, weight_decay, init std ratios as Table 1 at {WIDTH_X}x width, {DEPTH_X}x depth "
            f"and both ({counts[group]} tensors in 3 builds)"
        )
        checks.append(Check(f"static {group}", not issues, detail, seconds))
    return checks


@torch.no_grad()
def block_increment(gate: Gate, width: int, depth: int, layout: Layout, seed: int) -> float:
    """Mean over blocks of the rms of (block output - block input) at init, on one batch."""
    model, _ = gate.make(width, depth, seed=seed)
    seen, handles = {}, []
    for name in block_names(model, layout):
        module = model.get_submodule(name)

        def before(_m, args, kwargs, name=name):
            seen[name] = args[0] if args else kwargs["hidden_states"]

        def after(_m, _args, output, name=name):
            seen[name] = float((logits_of(output) - seen[name]).pow(2).mean().sqrt())

        handles += [
            module.register_forward_pre_hook(before, with_kwargs=True),
            module.register_forward_hook(after),
        ]
    x, _ = next(_batches(_vocab(model), 4, 32, seed))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return float(np.mean(list(seen.values())))


@torch.no_grad()
def output_multiplier(gate: Gate, width: int, layout: Layout) -> float:
    """The factor between the logits and the final norm's output times the unembedding (least squares)."""
    model, _ = gate.make(width, gate.base_depth)
    head = model.get_submodule(layout.output)
    norm = next(
        m
        for n, m in model.named_modules()
        if (own := [f"{n}.{p}" for p, _ in m.named_parameters(recurse=False)])
        and all(any(fnmatchcase(o, g) for g in layout.final_norm) for o in own)
    )
    seen = {}
    handle = norm.register_forward_hook(lambda _m, _a, out: seen.__setitem__("z", logits_of(out)))
    x, _ = next(_batches(_vocab(model), 4, 32, 0))
    try:
        logits = logits_of(model(x)).double()
    finally:
        handle.remove()
    raw = F.linear(seen["z"], head.weight, getattr(head, "bias", None)).double()
    return float((logits * raw).sum() / (raw * raw).sum())


def multiplier_checks(gate: Gate, layout: Layout) -> list[Check]:
    """The residual multiplier (block increments, 4x depth / base) and the output multiplier (2x width)."""
    bw, bd, checks = gate.base_width, gate.base_depth, []
    for name, rule, tol, measure, shapes, want in (
        ("residual multiplier", "m_L^-alpha", RESIDUAL_TOLERANCE, "block increment at init, depth",
         (bd, DEPTH_X * bd), gate.rules(bw, DEPTH_X * bd).residual_multiplier),
        ("output multiplier", "m_N^-1", OUTPUT_TOLERANCE, "logits / (final norm x unembedding), width",
         (bw, WIDTH_X * bw), gate.rules(WIDTH_X * bw, bd).output_multiplier),
    ):  # fmt: skip
        t0 = time.perf_counter()
        if name == "residual multiplier":
            base, large = (np.mean([block_increment(gate, bw, d, layout, s) for s in SEEDS]) for d in shapes)
        else:
            base, large = (output_multiplier(gate, w, layout) for w in shapes)
        ok = bool(abs(large / base - want) <= tol * want)
        detail = f"{measure} {shapes[1]} over {shapes[0]}, x{large / base:.3g} ({'' if ok else 'expected '}"
        checks.append(Check(name, ok, f"{detail}{rule} = x{want:.3g})", time.perf_counter() - t0))
    return checks


def base_lr(gate: Gate, layout: Layout) -> float:
    """The base lr: the embedding's (Table 1 never scales it), else the largest group lr."""
    table = tensor_table(*gate.make(gate.base_width, gate.base_depth), layout, gate.roles)
    lrs = [r["lr"] for r in table.values() if r["group"] == "embedding" and r["lr"]]
    return lrs[0] if lrs else max(r["lr"] for r in table.values() if r["lr"])


def coord_checks(gate: Gate, lr: float) -> list[Check]:
    checks = []
    for axis, base, other in (
        ("width", gate.base_width, gate.base_depth),
        ("depth", gate.base_depth, gate.base_width),
    ):
        t0 = time.perf_counter()
        values = [base * s for s in SCALES]
        slope = coord_slope(
            gate.factory(COORD_LR / lr), gate.parameterization, axis=axis, values=values, base=other
        )
        low, high = expectation(gate.parameterization, axis)
        want = f"growing, >= {low:g}" if math.isinf(high) else f"flat, {low:g} to {high:g}"
        detail = f"slope {slope:+.2f} over {axis} {values[0]}-{values[-1]} (expected {want})"
        checks.append(Check(f"{axis} coord check", low <= slope <= high, detail, time.perf_counter() - t0))
    return checks


def laziness_check(gate: Gate, lr: float) -> Check:
    t0 = time.perf_counter()
    depths = [gate.base_depth * s for s in SCALES]
    slope = lazy_slope(
        gate.factory(LAZY_LR / lr), gate.parameterization, depths=depths, width=gate.base_width
    )
    want = expected_slope(gate.parameterization)
    ok = bool(np.isfinite(slope) and abs(slope - want) <= TOLERANCE)
    detail = f"slope {slope:+.2f} over depth {depths[0]}-{depths[-1]} (expected {want:+.2f} ± {TOLERANCE})"
    return Check("laziness", ok, detail, time.perf_counter() - t0)


def bracket_loss(gate: Gate, depth: int, factor: float, seed: int) -> float:
    """Validation loss after BRACKET_STEPS steps (linear warmup over the first tenth) at the base
    width, the lr times ``factor``; inf if the loss went non-finite."""
    model, opt = gate.make(gate.base_width, depth, seed=seed, lr_factor=factor)
    vocab, lrs = _vocab(model), [g["lr"] for g in opt.param_groups]
    batches = _batches(vocab, 16, 32, seed)
    for step in range(BRACKET_STEPS):
        for group, lr in zip(opt.param_groups, lrs):
            group["lr"] = lr * min(1.0, (step + 1) / (BRACKET_STEPS // 10))
        x, y = next(batches)
        loss = _loss(model, x, y)
        if not torch.isfinite(loss):
            return math.inf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    source = load_source(BUILTIN, max(vocab, 256), 32)
    with torch.no_grad():
        val = [source.batch("val", i, batch_size=16, seq_len=32) for i in range(4)]
        return float(np.mean([_loss(model, x % vocab, y % vocab).item() for x, y in val]))


def _loss(model, x, y):
    logits = logits_of(model(x))
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def bracket_check(gate: Gate) -> Check:
    """Best of lr x 1/2, 1, 2 (mean over SEEDS) at the base depth and 4x: PASS when it moves by at most
    one point, or keeping the base depth's best costs at most REGRET of the loss at 4x."""
    t0 = time.perf_counter()
    depths = (gate.base_depth, DEPTH_X * gate.base_depth)
    losses = [[np.mean([bracket_loss(gate, d, f, s) for s in SEEDS]) for f in BRACKET] for d in depths]
    (base, deep), deep_losses = (int(np.argmin(v)) for v in losses), losses[1]
    regret = deep_losses[base] / deep_losses[deep] - 1 if math.isfinite(deep_losses[deep]) else math.inf
    ok = all(math.isfinite(min(v)) for v in losses) and (abs(base - deep) <= 1 or regret <= REGRET)
    parts = "; ".join(f"depth {d} " + "/".join(f"{v:.3f}" for v in ls) for d, ls in zip(depths, losses))
    detail = (
        f"best lr x{BRACKET[base]:g} at depth {depths[0]}, x{BRACKET[deep]:g} at depth {depths[1]}, "
        f"regret {regret:.1%} (val loss at lr x{'/'.join(f'{f:g}' for f in BRACKET)}: {parts})"
    )
    return Check("lr bracket", ok, detail, time.perf_counter() - t0)


def run_checks(gate: Gate, *, static_only: bool = False, report: Callable[[Check], None] = lambda c: None):
    """Every check in order, each reported as it finishes; the list of them."""
    checks: list[Check] = []

    def add(found: list[Check]):
        for check in found:
            checks.append(check)
            report(check)

    with layouts.preferring(gate.layout):
        model, _ = gate.make(gate.base_width, gate.base_depth)
        layout = gate.layout or detect(model)
        add(static_checks(gate, layout))
        add(multiplier_checks(gate, layout))
        if not static_only:
            lr = base_lr(gate, layout)
            add(coord_checks(gate, lr))
            add([laziness_check(gate, lr), bracket_check(gate)])
    return checks
