"""One training run: ``train_trial(config, on_eval) -> TrialResult``. No Ray, no MLflow.

Divergence is an outcome, not an error: a run whose loss becomes non-finite or climbs far above its
first value stops early and returns status ``diverged``, so a sweep records it as a row.

Data-parallel (``Runtime(distributed=True)``, inside a process group that Ray Train set up): each
rank computes its slice of the same global batch, DDP averages the gradients and every logged loss
is averaged over the ranks, so N workers make the updates, and log the curve, of one worker with the
same batch. ``micro_batch_size`` splits a rank's slice into micro-batches whose gradients add up.
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
import torch.distributed as dist

from . import __version__
from .data import TokenSource, load_source
from .model import Transformer
from .optim import build_optimizer, lr_at, set_lr
from .parameterization import RULES_VERSION
from .trial import ConfigError, CurvePoint, TrialConfig, TrialResult

EvalCallback = Callable[[CurvePoint], None]


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Where a trial runs. Not part of trial_id: it does not change what is computed."""

    device: str = "auto"
    """'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    threads: int = 1
    """CPU threads for torch: the CPUs the trial was given (two 1-thread trials beat one 2-thread)."""
    distributed: bool = False
    """One rank of a data-parallel trial: torch.distributed is initialised (by Ray Train)."""


@dataclass(frozen=True)
class Split:
    """How this process computes a step's global batch: its rank's slice, in micro-batches."""

    rank: int = 0
    ranks: int = 1
    micro: int = 0
    """Sequences per forward pass (the rank's whole slice when there is no accumulation)."""

    @classmethod
    def of(cls, config: TrialConfig, *, distributed: bool = False) -> Split:
        rank, ranks = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        if config.batch_size % ranks:
            raise ConfigError(
                "batch_size",
                f"batch_size {config.batch_size} does not split over {ranks} workers; "
                "use a multiple of resources.workers_per_trial",
            )
        share = config.batch_size // ranks
        micro = config.micro_batch_size if config.micro_batch_size not in (0, config.batch_size) else share
        if share % micro:
            raise ConfigError(
                "micro_batch_size",
                f"micro_batch_size {micro} does not divide the {share} sequences each of {ranks} "
                "workers computes; use a divisor of batch_size / resources.workers_per_trial",
            )
        return cls(rank, ranks, micro)

    def mean(self, value: float, device: torch.device) -> float:
        """``value`` averaged over the ranks (the same number on every rank)."""
        if self.ranks == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.item() / self.ranks

    def parts(self, x: torch.Tensor, y: torch.Tensor):
        return list(zip(x.split(self.micro), y.split(self.micro)))


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
def evaluate(
    model: Transformer, source: TokenSource, config: TrialConfig, autocast, split: Split | None = None
) -> float:
    split = split or Split.of(config)
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for i in range(config.eval_batches):
        x, y = source.batch(
            "val", i, batch_size=config.batch_size, seq_len=config.seq_len, rank=split.rank, ranks=split.ranks
        )
        parts = split.parts(x, y)
        batch_total = 0.0
        for xm, ym in parts:
            with autocast():
                _, loss = model(xm.to(device), ym.to(device))
            batch_total += loss.item()
        total += batch_total / len(parts)
    model.train()
    return split.mean(total / config.eval_batches, device)


def _forward_backward(net, x, y, split: Split, device: torch.device, autocast) -> float:
    """Gradients of this rank's slice, micro-batch by micro-batch; the global batch's mean loss."""
    parts = split.parts(x, y)
    total = 0.0
    for i, (xm, ym) in enumerate(parts):
        # DDP all-reduces the gradients once, in the last micro-batch's backward.
        last = i == len(parts) - 1
        with contextlib.nullcontext() if last or split.ranks == 1 else net.no_sync():
            with autocast():
                _, loss = net(xm.to(device), ym.to(device))
            (loss / len(parts)).backward()
        total += loss.item()
    return split.mean(total / len(parts), device)


def autocast_for(device: torch.device):
    """The mixed-precision context a trial trains under on ``device``: bf16 autocast on CUDA, none on CPU."""
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
    split = Split.of(config, distributed=runtime.distributed)
    model = build_model(config, device)
    opt = build_optimizer(
        model,
        config.rules(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        eps=config.eps,
        betas=(config.beta1, config.beta2),
    )
    autocast = autocast_for(device)
    net = model  # what the steps call: the model, or DDP around it (which averages the gradients)
    if split.ranks > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
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
            "train",
            step,
            batch_size=config.batch_size,
            seq_len=config.seq_len,
            seed=config.seed,
            rank=split.rank,
            ranks=split.ranks,
        )
        opt.zero_grad(set_to_none=True)
        # The loss is known only after every micro-batch's backward; a diverged step is not applied.
        last_loss = _forward_backward(net, x, y, split, device, autocast)
        if step == 0:
            first_loss = last_loss
        if not math.isfinite(last_loss) or last_loss > config.divergence_factor * first_loss:
            diverged_at = step  # every rank sees the same averaged loss, so all stop here together
            break
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
                val_loss=evaluate(model, source, config, autocast, split),
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
