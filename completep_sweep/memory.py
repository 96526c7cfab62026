"""How much memory a trial needs: an estimate for ``validate``, and the size in an out-of-memory row.

``estimate_memory`` is arithmetic on the trial's fields (torch-free, like shape.py), for the model
in model.py trained as train.py does (float32, AdamW, one step of batch_size x seq_len tokens):

- per parameter 18 bytes: weight, gradient and AdamW's two moments (16), and the step's temporaries;
- per token, for the backward pass, float32: each block about (8 + 4 x mlp_ratio) x width values
  (LayerNorm inputs, q/k/v, the attention output, the MLP's up and GELU outputs and, while the
  backward runs, their gradients), the head 4 x vocab_size (logits, log-softmax, their gradients).
  Attention is a fused kernel (scaled_dot_product_attention): no seq_len x seq_len matrix is kept;
- ``RUNTIME_BYTES`` for the worker process itself (interpreter, torch and its kernels, Ray, data).

The coefficients were fitted to the peak RSS of one CPU trial in a plain process (torch 2.13, ten
shapes from 32 x 2 to 1024 x 4, batch x seq_len up to 64 x 512; that process took 350 MiB before its
model, and ``RUNTIME_BYTES`` adds about 100 MiB for Ray): the model part came within about 10% of
each. A sizing aid, not a promise. On a GPU (``on_gpu``), the parameters' share is the same and
bf16 autocast halves the activations; that variant is the same arithmetic, not measured here.
"""

from __future__ import annotations

import os
import re
from typing import Any

RUNTIME_BYTES = 450 << 20  # a trial worker without its model: interpreter, torch, Ray, the data
_FP32 = 4
_BYTES_PER_PARAM = 18  # weight, gradient, AdamW exp_avg and exp_avg_sq (4 x 4), the step's temporaries
# Fields the estimate grows with: the largest trial of a sweep takes the largest value of each.
SIZE_FIELDS = ("width", "depth", "batch_size", "seq_len", "vocab_size", "mlp_ratio")


def param_count(config: Any) -> int:
    """Parameters of model.Transformer at the config's shape (shared tensors once)."""
    n, r, vocab, bias = config.width, config.mlp_ratio, config.vocab_size, bool(config.bias)
    norm = n * (2 if bias else 1)
    block = 2 * norm + (4 + 2 * r) * n * n + (bias * (3 * n + n + r * n + n))
    embeddings = vocab * n + config.seq_len * n
    head = 0 if config.tie_embeddings else vocab * n
    return config.depth * block + embeddings + norm + head


def activation_bytes(config: Any, *, on_gpu: bool = False) -> int:
    """Activations one training step keeps for its backward pass (see the module docstring):
    float32 on a CPU, bf16 under a GPU's autocast."""
    tokens = config.batch_size * config.seq_len
    per_token = config.depth * (8 + 4 * config.mlp_ratio) * config.width + 2 * config.width
    return (2 if on_gpu else _FP32) * tokens * (per_token + 4 * config.vocab_size)


def estimate_memory(config: Any, *, on_gpu: bool = False) -> int:
    """Approximate peak bytes of one trial (any object with TrialConfig's size fields): parameters
    with their gradients and AdamW state, one step's activations and, on a CPU, the worker process;
    ``on_gpu``: of the GPU's memory instead."""
    runtime = 0 if on_gpu else RUNTIME_BYTES
    return _BYTES_PER_PARAM * param_count(config) + activation_bytes(config, on_gpu=on_gpu) + runtime


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def largest_trial(sweep) -> Any:
    """The sweep's template at the largest value of every size axis (an upper bound on any trial),
    the deepest a decided search's ``max_depth`` may add included."""
    largest = {k: max(sweep.axes[k]) for k in SIZE_FIELDS if k in sweep.axes}
    if "depth" in largest:
        from .search_table import deeper_depths

        added = deeper_depths(largest["depth"], getattr(sweep.spec.search, "max_depth", None))
        largest["depth"] = max([largest["depth"], *added])
    return sweep.template.replace(**largest) if largest else sweep.template


def memory_summary(
    sweep, *, concurrency: int, cpus_per_trial: float, gpus_per_trial: float = 0, total: int | None = None
) -> str:
    """One line for ``validate``: the largest trial's estimate, times the trials run at once, against
    this machine's memory (``total``, default the physical memory). Starts with 'warning:' when
    they would not fit. A GPU trial's estimate is of GPU memory, which this machine cannot see."""
    big = largest_trial(sweep)
    shape = f"width {big.width}, depth {big.depth}, batch_size {big.batch_size} x seq_len {big.seq_len}"
    if gpus_per_trial > 0:
        need = gib(estimate_memory(big, on_gpu=True))
        return f"memory: the largest trial ({shape}) needs about {need} of GPU memory (bf16 activations)"
    each = estimate_memory(big)
    total = machine_memory() if total is None else total
    at_once = f"{concurrency} at once ({cpus_per_trial:g} CPU each)"
    text = f"the largest trial ({shape}) needs about {gib(each)}; {at_once} about {gib(each * concurrency)}"
    if total is None:
        return f"memory: {text}"
    if each > total:
        return (
            f"warning: memory: {text}, more than this machine's {gib(total)} for one trial; lower "
            "batch_size or seq_len, or run it on a machine with more memory"
        )
    if each * concurrency > total:
        fit = max(1, int(total // each))
        return (
            f"warning: memory: {text}, more than this machine's {gib(total)}; set "
            f"resources.max_concurrent = {fit} (or raise cpus_per_trial) so they fit"
        )
    return f"memory: {text} of this machine's {gib(total)}"


# An error text that says the trial ran out of memory: Python's, torch's (CPU and CUDA), Ray's
# memory monitor and a worker killed by the kernel's OOM killer.
_OOM = re.compile(r"out of memory|MemoryError|allocate memory|low on memory|\bOOM\b", re.IGNORECASE)


def with_trial_size(text: str, config: Any) -> str:
    """A failed trial's error text for its row, its last line (what ``status`` shows) naming the
    trial's size: an out-of-memory error depends on batch_size and seq_len, which the status line
    does not otherwise show."""
    text = text.rstrip() or "trial failed (no error text)"
    c = config
    size = f"width {c.width}, depth {c.depth}, batch_size {c.batch_size}, seq_len {c.seq_len}"
    if not _OOM.search(text):
        return f"{text} ({size})"
    return (
        f"{text}\nout of memory at {size} (about {gib(estimate_memory(config))} by estimate): lower "
        "batch_size or seq_len, or run fewer trials at once (resources.max_concurrent)"
    )
