"""The coordinate and laziness checks on any model: a factory in, slopes out.

``build(parameterization, width, depth)`` returns ``(model, optimizer)`` made by your own code (with
``parameterize`` or without): the model maps token ids (B, T) to logits (B, T, V), or to an object
with ``.logits`` as HuggingFace models do. The checks read the model through its ``Layout``:
- ``coord_slope``: train each shape a few steps on the byte corpus and fit the log2-log2 slope of
  the final residual stream's mean |x| (the input of the final norm) against depth or width; the
  expectation is ``coord_check.expectation`` (flat where the parameterization scales, growing where
  it does not), exactly as for the built-in model;
- ``lazy_slope``: the paper's Fig. 6 on block 0: after one optimizer step, how far the change of
  the block's residual contribution is from its linearization, against depth; α − 1 is expected
  (``lazy_check.expected_slope``): −1/2 for α = 0.5, flat for CompleteP.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from .coord_check import log_slope
from .data import BUILTIN, load_source
from .layouts import Layout, block_names, detect

Build = Callable[[str, int, int], tuple[torch.nn.Module, torch.optim.Optimizer]]


def logits_of(output) -> torch.Tensor:
    """Logits from a model's output: a tensor, a (logits, ...) tuple, or an object with .logits."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"the model returned {type(output).__name__}; return logits (B, T, V) or .logits")


def _final_norm(model: torch.nn.Module, layout: Layout) -> torch.nn.Module:
    from fnmatch import fnmatchcase

    for name, module in model.named_modules():
        owned = [f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)]
        if owned and all(any(fnmatchcase(o, g) for g in layout.final_norm) for o in owned):
            return module
    raise ValueError(f"no module owns the final norm's parameters {layout.final_norm}; fix the layout")


def _batches(vocab: int, batch_size: int, seq_len: int, seed: int):
    source = load_source(BUILTIN, max(vocab, 256), seq_len)
    step = 0
    while True:
        x, y = source.batch("train", step, batch_size=batch_size, seq_len=seq_len, seed=seed)
        yield x % vocab, y % vocab
        step += 1


def _vocab(model: torch.nn.Module) -> int:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        emb = next(m for m in model.modules() if isinstance(m, torch.nn.Embedding))
    return emb.num_embeddings


def residual_scale(
    build: Build, parameterization: str, width: int, depth: int, *, steps: int, seed: int, seq_len: int = 32
) -> float:
    """Mean |x| of the final residual stream after ``steps`` optimizer steps (seeded)."""
    torch.manual_seed(seed)
    model, opt = build(parameterization, width, depth)
    layout = detect(model) if not isinstance(getattr(model, "layout", None), Layout) else model.layout
    seen = {}
    handle = _final_norm(model, layout).register_forward_pre_hook(
        lambda _m, args: seen.__setitem__("x", args[0].detach().abs().mean().item())
    )
    batches = _batches(_vocab(model), 4, seq_len, seed)
    try:
        for step in range(steps + 1):
            x, y = next(batches)
            logits = logits_of(model(x))
            if step == steps:
                break
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        handle.remove()
    return seen["x"]


def coord_slope(
    build: Build, parameterization: str, *, axis: str, values, base: int, steps: int = 10, seeds=(0, 1)
) -> float:
    """log2-log2 slope of the final residual stream against ``axis`` (the other axis at ``base``)."""
    ys = []
    for v in values:
        width, depth = (v, base) if axis == "width" else (base, v)
        ys.append(
            np.mean(
                [residual_scale(build, parameterization, width, depth, steps=steps, seed=s) for s in seeds]
            )
        )
    return log_slope(np.asarray(values, float), np.asarray(ys))


def lazy_distance(build: Build, parameterization: str, width: int, depth: int, *, seed: int) -> float:
    """Relative distance of block 0's residual branches' update from their linearization after one
    optimizer step, each branch on the input it saw (as the built-in check does: composing the
    branches would add a depth-dependent term of its own)."""
    torch.manual_seed(seed)
    model, opt = build(parameterization, width, depth)
    layout = detect(model)
    block_name = block_names(model, layout)[0]
    branches = {
        name: module
        for name, module in model.named_modules()
        if any(fnmatchcase(name, f"{block_name}.{b}") for b in layout.branches)
    }
    captured = {}

    def capture(name):
        def hook(_m, args, kwargs):
            captured.setdefault(name, (_to64(args), {k: _to64(v) for k, v in kwargs.items()}))

        return hook

    handles = [m.register_forward_pre_hook(capture(n), with_kwargs=True) for n, m in branches.items()]
    x, y = next(_batches(_vocab(model), 4, 32, seed))
    logits = logits_of(model(x))
    for h in handles:
        h.remove()

    def outputs(params):
        parts = []
        for name, module in branches.items():
            own = {k[len(name) + 1 :]: v for k, v in params.items() if k.startswith(name + ".")}
            args, kwargs = captured[name]
            out = functional_call(module, own, args, kwargs)
            parts.append(out[0] if isinstance(out, tuple) else out)
        return torch.cat(parts, dim=-1)

    names = [n for n, _ in model.named_parameters() if any(n.startswith(b + ".") for b in branches)]
    params = dict(model.named_parameters())
    before = {n: params[n].detach().double().clone() for n in names}
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
    loss.backward()
    opt.step()
    after = {n: params[n].detach().double().clone() for n in names}
    delta = {n: after[n] - before[n] for n in names}
    for module in branches.values():
        module.double()
    eps = 1e-4
    with torch.no_grad():
        change = outputs(after) - outputs(before)
        linear = (
            outputs({n: before[n] + eps * delta[n] for n in names})
            - outputs({n: before[n] - eps * delta[n] for n in names})
        ) / (2 * eps)
    return float((change - linear).norm() / change.norm())


def _to64(v):
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return v.detach().double()
    if isinstance(v, tuple):
        return tuple(_to64(u) for u in v)
    return v


def lazy_slope(build: Build, parameterization: str, *, depths, width: int, seeds=(0, 1)) -> float:
    """log2-log2 slope of ``lazy_distance`` against depth."""
    ys = [np.mean([lazy_distance(build, parameterization, width, d, seed=s) for s in seeds]) for d in depths]
    return log_slope(np.asarray(depths, float), np.asarray(ys))
