"""A user's own trainer, as a sweep calls it: HuggingFace GPT-2 with CompleteP (or SP, µP, α).

The sweep file (examples/gpt2-sweep.toml) names it: ``trainer = "examples.gpt2_trainer:train"``.
Each trial calls ``train(config, report)`` with every field of the trial (width, depth, lr, ...,
the resolved ``rules``); it builds the model from a config with random weights (nothing is
downloaded), applies the parameterization with ``completep_sweep.parameterize``, trains on the
built-in byte corpus, reports its evaluations, and returns the final losses. Copy it and put your
own model and data where GPT-2 and the byte corpus are.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from a config: nothing to fetch

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402

from completep_sweep.data import load_source  # noqa: E402
from completep_sweep.parameterize import lr_at, parameterize, set_lr  # noqa: E402

transformers.logging.set_verbosity_error()


def build_gpt2(config: dict) -> torch.nn.Module:
    """GPT-2 at the trial's width and depth (heads of ``head_dim``), no dropout."""
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_embd=config["width"],
            n_layer=config["depth"],
            n_head=config["width"] // config["head_dim"],
            vocab_size=config["vocab_size"],
            n_positions=config["seq_len"],
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


@torch.no_grad()
def evaluate(model, source, config: dict) -> float:
    losses = []
    for i in range(config["eval_batches"]):
        x, y = source.batch("val", i, batch_size=config["batch_size"], seq_len=config["seq_len"], seed=0)
        logits = model(x).logits
        losses.append(F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item())
    return sum(losses) / len(losses)


def train(config: dict, report) -> dict:
    """One trial: returns the final losses (a NaN loss marks the trial diverged)."""
    torch.manual_seed(config["seed"])
    torch.set_num_threads(max(1, int(config.get("threads") or 1)))
    model = build_gpt2(config)
    p = parameterize(
        model,
        config["parameterization"],
        width=config["width"],
        depth=config["depth"],
        base_width=config["base_width"],
        base_depth=config["base_depth"],
        init_std=config["init_std"],
    )
    opt = torch.optim.AdamW(
        p.param_groups(lr=config["lr"], weight_decay=config["weight_decay"], eps=config["eps"]),
        betas=(config["beta1"], config["beta2"]),
    )
    source = load_source(config["data"], config["vocab_size"], config["seq_len"])
    first = last = math.nan
    for step in range(config["steps"]):
        set_lr(
            opt,
            lr_at(
                step,
                lr=config["lr"],
                total_steps=config["steps"],
                warmup_steps=config["warmup_steps"],
                decay=config["decay"],
                final_lr_ratio=config["final_lr_ratio"],
            ),
        )
        x, y = source.batch(
            "train", step, batch_size=config["batch_size"], seq_len=config["seq_len"], seed=config["seed"]
        )
        logits = model(x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        last = loss.item()
        first = last if step == 0 else first
        if not math.isfinite(last) or last > config["divergence_factor"] * first:
            return {"final_val_loss": math.nan, "final_train_loss": last, "status": "diverged"}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % config["eval_interval"] == 0 or step + 1 == config["steps"]:
            report({"step": step + 1, "train_loss": last, "val_loss": evaluate(model, source, config)})
    return {
        "final_val_loss": evaluate(model, source, config),
        "final_train_loss": last,
        "n_params": sum(t.numel() for t in model.parameters()),
    }
