"""One training run: ``train_trial(config, on_eval) -> TrialResult``. No Ray, no MLflow.

Divergence is an outcome, not an error: a run whose loss becomes non-finite or climbs far above its
first value stops early and returns status ``diverged``, so a sweep records it as a row.
"""

from __future__ import annotations

import contextlib
import functools
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from . import __version__
from .data import TokenSource, load_source
from .model import Transformer
from .optim import build_optimizer, lr_at, set_lr
from .parameterization import RULES_VERSION
from .trial import CurvePoint, TrialConfig, TrialResult

EvalCallback = Callable[[CurvePoint], None]


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Where a trial runs. Not part of trial_id: it does not change what is computed."""

    device: str = "auto"
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    threads: int = 1
    """CPU threads for torch: the CPUs the trial was given (two 1-thread trials beat one 2-thread)."""


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, rules version and, in a git checkout, the commit."""
    version = f"{__version__}+{RULES_VERSION}"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            version += f"+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA was requested but is not available; use device='auto' or 'cpu'")
    return device


def build_model(config: TrialConfig, device: torch.device | str = "cpu") -> Transformer:
    """The trial's model, initialised from ``config.seed`` (same seed → same weights)."""
    torch.manual_seed(config.seed)
    return Transformer(config.model_config(), config.rules()).to(device)


@torch.no_grad()
def evaluate(model: Transformer, source: TokenSource, config: TrialConfig, autocast) -> float:
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for i in range(config.eval_batches):
        x, y = source.batch("val", i, batch_size=config.batch_size, seq_len=config.seq_len)
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        total += loss.item()
    model.train()
    return total / config.eval_batches


def _autocast_for(device: torch.device):
    if device.type == "cuda":
        return functools.partial(torch.autocast, device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def train_trial(
    config: TrialConfig, on_eval: EvalCallback | None = None, runtime: Runtime = Runtime()
) -> TrialResult:
    """Train one trial for its token budget and return its row (never raises for divergence)."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    device = resolve_device(runtime.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, runtime.threads))
    # Large-std inits make denormals that slow CPU steps ~3x; flushing them changes nothing visible.
    torch.set_flush_denormal(True)
    source = load_source(config.data, config.vocab_size, config.seq_len)
    model = build_model(config, device)
    opt = build_optimizer(
        model,
        config.rules(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        eps=config.eps,
        betas=(config.beta1, config.beta2),
    )
    autocast = _autocast_for(device)
    schedule = functools.partial(
        lr_at,
        lr=config.lr,
        total_steps=config.steps,
        warmup_steps=config.warmup_steps,
        decay=config.decay,
        final_lr_ratio=config.final_lr_ratio,
    )

    curve: list[CurvePoint] = []
    window: list[float] = []  # train losses since the last evaluation
    first_loss = last_loss = math.nan
    diverged_at, clipped, steps_done = None, 0, 0
    for step in range(config.steps):
        set_lr(opt, schedule(step))
        x, y = source.batch(
            "train", step, batch_size=config.batch_size, seq_len=config.seq_len, seed=config.seed
        )
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        last_loss = loss.item()
        if step == 0:
            first_loss = last_loss
        if not math.isfinite(last_loss) or last_loss > config.divergence_factor * first_loss:
            diverged_at = step
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            clipped += int(norm.item() > config.grad_clip)
        opt.step()
        steps_done = step + 1
        window.append(last_loss)
        if steps_done % config.eval_interval == 0 or steps_done == config.steps:
            point = CurvePoint(
                step=steps_done,
                tokens=steps_done * config.batch_size * config.seq_len,
                train_loss=sum(window) / len(window),
                val_loss=evaluate(model, source, config, autocast),
                lr=schedule(step),
            )
            curve.append(point)
            window = []
            if on_eval is not None:
                on_eval(point)

    diverged = diverged_at is not None
    return TrialResult(
        config=config,
        status="diverged" if diverged else "ok",
        final_train_loss=last_loss if diverged else curve[-1].train_loss,
        final_val_loss=math.nan if diverged else curve[-1].val_loss,
        diverged_at_step=diverged_at,
        steps_done=steps_done,
        clip_fraction=clipped / steps_done if steps_done else 0.0,
        flops=model.flops_per_token() * steps_done * config.batch_size * config.seq_len,
        n_params=sum(p.numel() for p in model.parameters()),
        wall_time_s=time.perf_counter() - t0,
        device=str(device),
        started_at=started_at,
        code_version=code_version(),
        curve=tuple(curve),
    )
