"""The GPU path, measured: one script, under ten minutes on one GPU, one table.

(a) the paper preset's base shape (width 256, depth 2, seq 2048, GPT-2 vocabulary, batch 16) trained
    as a trial trains (bf16 autocast, fused AdamW, SDPA, per-group rules) beside a plain PyTorch loop
    of the same shape (the same model with every multiplier 1, one stock fused AdamW group):
    tokens/s, and model-FLOPs utilisation against the device's dense bf16 peak;
(b) four tiny trials packed at 0.25 GPU each (``gpus_per_trial = 0.25``) against one at a time,
    through ``completep-sweep run``: wall time of each;
(c) a 2-worker data-parallel trial against 1 worker (``workers_per_trial``) where there are two
    devices; else not measured, and said so;
(d) the same tiny trial on CPU and on the GPU: final losses agree within bf16 tolerance (2%).
Without a GPU every GPU row says "not measured" (never a number); ``--quick`` runs (a) and (d) on
whatever device there is at a tiny shape, as a smoke test of the code path, and skips (b) and (c).

    .venv/bin/python benchmarks/gpu_check.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from completep_sweep.optim import build_optimizer  # noqa: E402
from completep_sweep.presets import preset_config  # noqa: E402
from completep_sweep.train import Runtime, autocast_for, build_model, train_trial  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Dense bf16 peak FLOP/s by device name (vendor datasheets, without sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 125e12}


def peak(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), float("nan"))


def throughput(config, device, *, plain: bool, steps: int) -> float:
    """Tokens/s of training steps at ``config``'s shape: the trial's path, or a plain loop."""
    if plain:  # every multiplier exactly 1 (base shape = this shape), one stock AdamW group
        config = config.replace(parameterization="sp", base_width=config.width, base_depth=config.depth)
    model = build_model(config, device)
    if plain:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    else:
        opt = build_optimizer(model, config.rules(), lr=1e-4, weight_decay=0.1, eps=1e-8, betas=(0.9, 0.95))
    autocast = autocast_for(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, config.vocab_size, (config.batch_size, config.seq_len), generator=g).to(device)

    def step():
        with autocast():
            _, loss = model(x, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: allocations, kernels chosen
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.batch_size * config.seq_len / (time.perf_counter() - t0)


def packing(fraction: float) -> float:
    """Wall seconds of a 4-trial tiny sweep at ``gpus_per_trial = fraction`` (through the CLI)."""
    text = f"""name = "pack"
model = "tiny"
parameterizations = ["completep"]
[grid]
depth = [2]
lr = [0.001, 0.002, 0.004, 0.008]
[train]
steps = 300
[resources]
cpus_per_trial = 1
gpus_per_trial = {fraction}
"""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "pack.toml"
        spec.write_text(text)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "completep_sweep.cli", "run", str(spec), "--results", tmp, "--no-mlflow"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return time.perf_counter() - t0


def packing_processes(concurrent: bool) -> float:
    """Wall seconds of the same 4 tiny trials as ``packing`` run as 4 ``trial`` processes on one GPU.

    What ``gpus_per_trial = 0.25`` does underneath (four processes sharing a device), for a machine
    where Ray is not installed; the Tune scheduler's own overhead is then not in the number.
    """
    commands = [
        [sys.executable, "-m", "completep_sweep.cli", "trial", "--parameterization", "completep"]
        + ["--width", "32", "--depth", "2", "--lr", str(lr), "--steps", "300", "--device", "cuda"]
        for lr in (0.001, 0.002, 0.004, 0.008)
    ]
    t0 = time.perf_counter()
    if concurrent:
        running = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL) for c in commands]
        codes = [p.wait() for p in running]
    else:
        codes = [subprocess.run(c, cwd=ROOT, stdout=subprocess.DEVNULL).returncode for c in commands]
    if any(codes):
        raise RuntimeError(f"a packed trial failed: exit codes {codes}")
    return time.perf_counter() - t0


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, (a) and (d) only: a smoke test")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else "no GPU (CPU)"
    rows = []
    if args.quick:
        shape = preset_config("tiny", width=32, depth=2, seq_len=64, batch_size=4)
    else:
        shape = preset_config("paper", width=256, depth=2, data="shakespeare", vocab_size=50304)
    if cuda or args.quick:
        steps = 5 if args.quick else 50
        shapes = [shape] if args.quick else [shape, shape.replace(width=1024, depth=8, batch_size=8)]
        for one in shapes:
            at = f"w{one.width} d{one.depth}"
            ours = throughput(one, device, plain=False, steps=steps)
            base = throughput(one, device, plain=True, steps=steps)
            rows.append(
                (
                    f"(a) {at} trial path tokens/s",
                    f"{ours:,.0f}",
                    f"plain loop {base:,.0f}",
                    f"{ours / base:.2f}x",
                )
            )
            top = peak(device)
            if top == top:  # a known GPU: MFU against its dense bf16 peak
                mfu = ours * one.model_config().flops_per_token() / top
                rows.append(
                    (
                        f"(a) {at} model-FLOPs utilisation",
                        f"{100 * mfu:.1f}%",
                        f"peak {top / 1e12:g} TFLOP/s",
                        "",
                    )
                )
            else:
                rows.append(
                    (f"(a) {at} model-FLOPs utilisation", "not measured", "no known bf16 peak here", "")
                )
    else:
        rows.append(("(a) trial path tokens/s", "not measured", "no GPU here", ""))
    if cuda and not args.quick:
        if ray_installed():
            label, (packed, serial) = "(b) 4 trials at 0.25 GPU", (packing(0.25), packing(1.0))
        else:
            label = "(b) 4 trial processes on 1 GPU (no Ray here)"
            packed, serial = packing_processes(True), packing_processes(False)
        rows.append(
            (
                label,
                f"{packed:.0f} s",
                f"one at a time {serial:.0f} s",
                f"{serial / packed:.2f}x",
            )
        )
    else:
        rows.append(("(b) 4 trials at 0.25 GPU", "not measured", "needs a GPU (not --quick)", ""))
    if cuda and torch.cuda.device_count() >= 2 and not args.quick:
        rows.append(("(c) 2 workers against 1", "run benchmarks with workers_per_trial = 2", "", ""))
    else:
        rows.append(("(c) 2 workers against 1", "not measured", "needs two devices", ""))
    tiny = preset_config("tiny", width=32, depth=2, steps=20 if args.quick else 100, seq_len=64, batch_size=8)
    cpu = train_trial(tiny, runtime=Runtime(device="cpu", threads=os.cpu_count() or 1)).final_val_loss
    if cuda:
        gpu = train_trial(tiny, runtime=Runtime(device="cuda")).final_val_loss
        agree = abs(gpu - cpu) / cpu
        verdict = "agree" if agree < 0.02 else "DIFFER"
        rows.append(
            ("(d) tiny trial CPU vs GPU", f"{gpu:.4f}", f"CPU {cpu:.4f}", f"{100 * agree:.2f}% {verdict}")
        )
    else:
        rows.append(("(d) tiny trial CPU vs GPU", "not measured", f"CPU {cpu:.4f}; no GPU here", ""))
    if args.json:
        print(json.dumps({"device": name, "rows": rows}))
        return
    print(f"device: {name}; torch {torch.__version__}\n")
    print("| check | value | against | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
