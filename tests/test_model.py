import hashlib
import math

import pytest
import torch

from completep_sweep.model import (
    BIAS,
    GAIN,
    INIT,
    NORMAL,
    ONES,
    WEIGHT,
    ZEROS,
    Block,
    ModelConfig,
    Transformer,
    param_kind,
)
from completep_sweep.optim import build_optimizer, param_groups
from completep_sweep.parameterization import GROUPS, INITIALIZED_GROUPS, scaling_rules
from completep_sweep.train import build_model
from completep_sweep.trial import TrialConfig

NAMES = ["sp", "mup", "alpha0.5", "completep"]


def tiny(**kw) -> TrialConfig:
    defaults = dict(width=32, depth=2, base_width=32, base_depth=2, head_dim=16, seq_len=32, batch_size=4)
    return TrialConfig(**{**defaults, **kw})


@pytest.mark.parametrize("bias, tie", [(True, False), (False, False), (True, True)])
def test_every_parameter_in_exactly_one_group(bias, tie):
    model = build_model(tiny(parameterization="completep", width=64, depth=3, bias=bias, tie_embeddings=tie))
    groups = model.param_groups()
    assert set(groups) == set(GROUPS)
    seen = [id(p) for named in groups.values() for _, p in named]
    assert len(seen) == len(set(seen)) == len(list(model.parameters()))
    assert bool(groups["hidden_bias"]) is bias
    names = {g: {n for n, _ in named} for g, named in groups.items()}
    assert "blocks.0.attn.qkv.weight" in names["hidden_weight"]
    assert "blocks.2.mlp.down.weight" in names["hidden_weight"]
    assert "blocks.1.ln_2.weight" in names["block_norm"]
    assert names["final_norm"] == ({"ln_f.weight", "ln_f.bias"} if bias else {"ln_f.weight"})
    assert ("blocks.1.ln_2.bias" in names["block_norm"]) is bias  # LayerNorms follow `bias` too
    assert names["unembedding"] == (set() if tie else {"lm_head.weight"})


def test_bias_false_trials_get_ids_of_their_own():
    # Until 0.2.0 LayerNorms kept biases when bias = false: such rows must not be reused.
    with_bias, without = tiny(bias=True), tiny(bias=False)
    legacy = {**{f: getattr(without, f) for f in TrialConfig.field_names()}}
    import hashlib
    import json

    from completep_sweep.parameterization import RULES_VERSION
    from completep_sweep.trial import ADDED_DEFAULTS

    # The id before 0.2.0: no labels, and none of the fields added since (data_fingerprint, trainer...).
    payload = {k: v for k, v in legacy.items() if k not in ("sweep", "model", *ADDED_DEFAULTS)}
    old_id = hashlib.sha256(
        json.dumps(
            {**payload, "rules_version": RULES_VERSION}, sort_keys=True, separators=(",", ":")
        ).encode()
    ).hexdigest()[:16]
    assert without.trial_id != old_id and with_bias.trial_id != without.trial_id


def test_unclassified_parameter_is_an_error_naming_it():
    model = build_model(tiny())
    model.blocks[0].gate = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="blocks.0.gate"):
        model.param_groups()


def test_init_stds_match_rules_statistically():
    sigma, base, width = 0.05, 32, 256
    model = build_model(tiny(parameterization="mup", width=width, depth=2, base_width=base, init_std=sigma))
    groups = model.param_groups()
    expected_hidden = sigma * math.sqrt(base / width)
    for name, p in groups["hidden_weight"]:
        n = p.numel()  # std of the sample std of n normals is σ/sqrt(2n); allow 6 of those
        assert p.std().item() == pytest.approx(expected_hidden, rel=6 / math.sqrt(2 * n)), name
        assert abs(p.mean().item()) < 6 * expected_hidden / math.sqrt(n)
    for g in ("embedding", "unembedding"):
        for name, p in groups[g]:
            assert p.std().item() == pytest.approx(sigma, rel=6 / math.sqrt(2 * p.numel())), name
    for name, p in groups["block_norm"] + groups["final_norm"]:
        assert torch.all(p == (1.0 if name.endswith("weight") else 0.0)), name
    for name, p in groups["hidden_bias"]:
        assert torch.all(p == 0), name


def test_sp_hidden_init_does_not_shrink_with_width():
    model = build_model(tiny(parameterization="sp", width=256, base_width=32, init_std=0.05))
    w = model.blocks[0].mlp.up.weight
    assert w.std().item() == pytest.approx(0.05, rel=0.02)


def _first_losses(name: str, steps: int = 4) -> list[float]:
    config = tiny(
        parameterization=name, width=64, depth=3, base_width=64, base_depth=3, lr=3e-3, weight_decay=0.1
    )
    model = build_model(config)
    opt = build_optimizer(
        model,
        config.rules(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        eps=config.eps,
        betas=(0.9, 0.95),
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (4, 32), generator=g)
    losses = []
    for _ in range(steps):
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_base_shape_identical_across_parameterizations():
    configs = {
        n: tiny(parameterization=n, width=64, depth=3, base_width=64, base_depth=3, weight_decay=0.1)
        for n in NAMES
    }
    states = {n: build_model(c).state_dict() for n, c in configs.items()}
    for n in NAMES[1:]:
        assert states[n].keys() == states["sp"].keys()
        assert all(torch.equal(states[n][k], states["sp"][k]) for k in states["sp"]), n
    groups = {}
    for n, c in configs.items():
        groups[n] = [
            {k: v for k, v in g.items() if k != "params"}
            for g in param_groups(build_model(c), c.rules(), weight_decay=0.1, eps=1e-8)
        ]
    assert all(groups[n] == groups["sp"] for n in NAMES)
    losses = {n: _first_losses(n) for n in NAMES}
    assert all(losses[n] == losses["sp"] for n in NAMES)  # bit for bit


def test_different_shapes_do_differ():
    # Guards the identity test: away from the base shape the parameterizations must not coincide.
    a = _first_losses_at("mup")
    b = _first_losses_at("completep")
    assert a != b


def _first_losses_at(name):
    config = tiny(parameterization=name, width=64, depth=4, base_width=32, base_depth=2)
    model = build_model(config)
    x = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    return model(x, x)[1].item()


def test_residual_multiplier_applied_to_both_branches():
    cfg = ModelConfig(width=32, depth=1, head_dim=16, vocab_size=256, seq_len=8)
    torch.manual_seed(0)
    block = Block(cfg, residual_multiplier=0.25)
    x = torch.randn(2, 8, 32)
    h = x + 0.25 * block.attn(block.ln_1(x))
    expected = h + 0.25 * block.mlp(block.ln_2(h))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_output_multiplier_scales_logits():
    config = tiny(parameterization="mup", width=128, base_width=32)
    model = build_model(config)
    x = torch.randint(0, 256, (2, 16))
    logits, _ = model(x)
    h = model.embed(x)
    for b in model.blocks:
        h = b(h)
    raw = model.lm_head(model.ln_f(h))
    assert model.output_multiplier == 0.25
    assert torch.allclose(logits, 0.25 * raw, atol=1e-6)


def test_width_must_divide_into_heads():
    with pytest.raises(ValueError, match="head_dim"):
        ModelConfig(width=40, depth=2, head_dim=16, vocab_size=256, seq_len=8)


def test_rules_must_match_model_shape():
    cfg = ModelConfig(width=32, depth=2, head_dim=16, vocab_size=256, seq_len=8)
    with pytest.raises(ValueError, match="shape"):
        Transformer(cfg, scaling_rules("mup", width=64, depth=2, base_width=32, base_depth=2))


@pytest.mark.parametrize("bias, tie", [(True, False), (False, True)])
def test_analytic_flops_match_built_model(bias, tie):
    model = build_model(tiny(width=96, depth=3, bias=bias, tie_embeddings=tie))
    groups = model.param_groups()
    weights = sum(p.numel() for _, p in groups["hidden_weight"]) + 256 * 96  # unembedding (tied or not)
    assert model.flops_per_token() == 6.0 * weights + 12.0 * 3 * 32 * 96


# ---------------------------------------------------------------- the init table

# state_dict digests of build_model before the init table replaced the per-parameter conditionals
# (computed with the old model.py, torch 2.13 on CPU): the table must draw the same weights.
INIT_REFERENCE = [
    (
        dict(
            parameterization="sp",
            width=32,
            depth=2,
            base_width=32,
            base_depth=2,
            bias=True,
            tie_embeddings=False,
            seed=0,
        ),
        "c92a180c8157bc45",
    ),
    (
        dict(
            parameterization="mup",
            width=64,
            depth=3,
            base_width=32,
            base_depth=2,
            bias=True,
            tie_embeddings=False,
            seed=1,
        ),
        "b9e4612c0d32507c",
    ),
    (
        dict(
            parameterization="alpha0.5",
            width=96,
            depth=4,
            base_width=32,
            base_depth=2,
            bias=False,
            tie_embeddings=False,
            seed=2,
        ),
        "bed40ab0e096cba4",
    ),
    (
        dict(
            parameterization="completep",
            width=64,
            depth=3,
            base_width=32,
            base_depth=2,
            bias=True,
            tie_embeddings=True,
            seed=3,
        ),
        "b031efd5179b1cd7",
    ),
    (
        dict(
            parameterization="completep",
            width=128,
            depth=8,
            base_width=32,
            base_depth=2,
            bias=False,
            tie_embeddings=True,
            seed=0,
            init_std=0.05,
        ),
        "7aab269082915d94",
    ),
]


def _digest(model: Transformer) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.skipif(
    not torch.__version__.startswith("2.13."), reason="digests recorded with torch 2.13 (CPU RNG)"
)
@pytest.mark.parametrize("kw, digest", INIT_REFERENCE)
def test_initial_weights_unchanged_by_the_init_table(kw, digest):
    assert _digest(build_model(TrialConfig(head_dim=16, seq_len=32, **kw))) == digest


def _legacy_init(model: Transformer) -> None:
    """The init as it was written before the table (the reference for any torch version)."""
    with torch.no_grad():
        for group, params in model.param_groups().items():
            mult = model.rules.groups[group].init_std_mult
            for name, p in params:
                if mult is not None and p.dim() >= 2:
                    torch.nn.init.normal_(p, mean=0.0, std=model.cfg.init_std * mult)
                elif name.endswith("weight") and group in ("block_norm", "final_norm"):
                    torch.nn.init.ones_(p)
                else:
                    torch.nn.init.zeros_(p)


@pytest.mark.parametrize("kw, _digest", INIT_REFERENCE)
def test_init_table_draws_what_the_old_conditionals_drew(kw, _digest, monkeypatch):
    config = TrialConfig(head_dim=16, seq_len=32, **kw)
    new = build_model(config).state_dict()
    monkeypatch.setattr(Transformer, "_init_weights", _legacy_init)
    old = build_model(config).state_dict()
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in old)


def test_kinds_come_from_module_types():
    assert param_kind(torch.nn.LayerNorm(4), "weight") == GAIN
    assert param_kind(torch.nn.LayerNorm(4), "bias") == BIAS
    assert param_kind(torch.nn.Linear(4, 4), "weight") == WEIGHT
    assert param_kind(torch.nn.Linear(4, 4), "bias") == BIAS
    assert param_kind(torch.nn.Embedding(4, 4), "weight") == WEIGHT
    assert (
        param_kind(Block(ModelConfig(width=32, depth=1, head_dim=16, vocab_size=8, seq_len=8), 1.0), "gate")
        is None
    )


@pytest.mark.parametrize("bias, tie", [(True, False), (False, False), (True, True)])
def test_every_parameter_has_an_init_rule(bias, tie):
    model = build_model(tiny(width=64, depth=3, bias=bias, tie_embeddings=tie))
    table = model.param_table()
    assert set(table) == {n for n, _ in model.named_parameters()}
    assert all(entry in INIT for entry in table.values())
    assert table["blocks.0.ln_1.weight"] == ("block_norm", GAIN)
    assert table["ln_f.weight"] == ("final_norm", GAIN)
    assert table["blocks.1.mlp.up.weight"] == ("hidden_weight", WEIGHT)
    assert table["embed.wpe.weight"] == ("embedding", WEIGHT)
    if bias:
        assert table["blocks.0.ln_1.bias"] == ("block_norm", BIAS)
        assert table["blocks.0.attn.proj.bias"] == ("hidden_bias", BIAS)


def test_init_table_agrees_with_the_rules():
    # Normal draws exactly for the groups the rules give an init std; norms start at (1, 0), biases at 0.
    assert {g for (g, _), rule in INIT.items() if rule == NORMAL} == set(INITIALIZED_GROUPS)
    assert {k for (_, k), rule in INIT.items() if rule == NORMAL} == {WEIGHT}
    assert all(rule == ONES for (_, k), rule in INIT.items() if k == GAIN)
    assert all(rule == ZEROS for (_, k), rule in INIT.items() if k == BIAS)
    assert {g for g, _ in INIT} == set(GROUPS)


def test_parameter_without_an_init_rule_is_an_error_naming_it():
    model = build_model(tiny())
    model.embed.norm = torch.nn.LayerNorm(32)  # a gain in the embedding group: no rule says how it starts
    with pytest.raises(ValueError, match="embed.norm.weight"):
        model._init_weights()
