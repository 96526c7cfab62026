import math

import pytest
import torch

from completep_sweep.optim import build_optimizer, lr_at, param_groups, set_lr
from completep_sweep.train import build_model
from completep_sweep.trial import TrialConfig


def config_at(name, width=128, depth=8):
    return TrialConfig(
        parameterization=name, width=width, depth=depth, base_width=32, base_depth=2, seq_len=16
    )


def model_at(name, width=128, depth=8):
    return build_model(config_at(name, width, depth))


def test_groups_carry_rules():
    model = model_at("completep")  # m_N = 4, m_L = 4
    groups = {
        g["name"]: g for g in param_groups(model, config_at("completep").rules(), weight_decay=0.1, eps=1e-8)
    }
    assert groups["hidden_weight"]["lr_scale"] == pytest.approx(0.25)
    assert groups["hidden_weight"]["weight_decay"] == pytest.approx(0.4)
    assert groups["hidden_weight"]["eps"] == pytest.approx(1e-8 / 16)
    assert groups["block_norm"]["lr_scale"] == pytest.approx(1.0)
    assert groups["block_norm"]["weight_decay"] == 0.0
    assert groups["embedding"]["eps"] == 1e-8 and groups["unembedding"]["weight_decay"] == pytest.approx(0.1)


def test_alpha_half_depth_lr_factor():
    config = config_at("alpha0.5")
    groups = {
        g["name"]: g for g in param_groups(build_model(config), config.rules(), weight_decay=0.0, eps=1e-8)
    }
    assert groups["block_norm"]["lr_scale"] == pytest.approx(0.5)  # 4^(-1/2)
    assert groups["hidden_bias"]["lr_scale"] == pytest.approx(0.5)
    assert groups["hidden_weight"]["lr_scale"] == pytest.approx(0.125)


def test_schedule_multiplies_scale_never_overwrites_it():
    model = model_at("completep")
    opt = build_optimizer(
        model, config_at("completep").rules(), lr=0.01, weight_decay=0.0, eps=1e-8, betas=(0.9, 0.95)
    )
    for step in (0, 10, 99):
        base = lr_at(step, lr=0.01, total_steps=100, warmup_steps=10, decay="cosine", final_lr_ratio=0.1)
        set_lr(opt, base)
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(base * g["lr_scale"])


def test_schedule_shape():
    kw = dict(lr=1.0, total_steps=101, warmup_steps=10, final_lr_ratio=0.1)
    assert lr_at(0, decay="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(9, decay="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(100, decay="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(100, decay="linear", **kw) == pytest.approx(0.1)
    assert lr_at(55, decay="linear", **kw) == pytest.approx(0.55)
    assert lr_at(55, decay="cosine", **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(70, decay="constant", **kw) == 1.0


def test_every_decay_a_config_accepts_has_a_schedule():
    from completep_sweep.optim import DECAY_SHAPES
    from completep_sweep.trial import DECAYS, ConfigError, TrialConfig

    kw = dict(lr=1.0, total_steps=101, warmup_steps=10, final_lr_ratio=0.1)
    assert set(DECAY_SHAPES) | {"constant"} == set(DECAYS)
    for decay in DECAYS:
        assert lr_at(100, decay=decay, **kw) == pytest.approx(1.0 if decay == "constant" else 0.1)
    with pytest.raises(ConfigError, match="decay"):  # a name without a schedule never reaches lr_at
        TrialConfig(decay="step")


def test_weight_decay_is_lr_times_lambda():
    # One AdamW step with zero gradients: θ ← θ(1 − lr·λ) for decayed groups, unchanged for norms.
    model = model_at("mup", width=64, depth=2)
    opt = build_optimizer(
        model,
        config_at("mup", width=64, depth=2).rules(),
        lr=0.1,
        weight_decay=0.5,
        eps=1e-8,
        betas=(0.9, 0.95),
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    w = dict(model.named_parameters())
    # hidden: lr 0.1 × 1/2, λ 0.5 × 2 → decay 0.05 (width-invariant lr·λ = 0.05)
    assert torch.allclose(w["blocks.0.mlp.up.weight"], before["blocks.0.mlp.up.weight"] * (1 - 0.05))
    assert torch.allclose(w["embed.wte.weight"], before["embed.wte.weight"] * (1 - 0.05))
    assert torch.equal(w["ln_f.weight"], before["ln_f.weight"])


def test_groups_follow_the_rules_passed_not_the_models():
    model = model_at("sp")  # the optimizer takes its multipliers from the rules it is given
    groups = {
        g["name"]: g for g in param_groups(model, config_at("completep").rules(), weight_decay=0.1, eps=1e-8)
    }
    assert groups["hidden_weight"]["lr_scale"] == pytest.approx(0.25)
    assert groups["hidden_weight"]["weight_decay"] == pytest.approx(0.4)


def test_rules_for_another_shape_are_an_error():
    from completep_sweep.parameterization import scaling_rules

    with pytest.raises(ValueError, match="shape"):
        build_optimizer(
            model_at("mup"),
            scaling_rules("mup", width=64, depth=8, base_width=32, base_depth=2),
            lr=0.01,
            weight_decay=0.0,
            eps=1e-8,
            betas=(0.9, 0.95),
        )
