"""Table 1 on models this project did not write: HuggingFace GPT-2 and Llama, built from a config
with random weights (nothing downloaded), parameterized by ``completep_sweep.parameterize``."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from completep_sweep.coord_check import expectation
from completep_sweep.lazy_check import TOLERANCE, expected_slope
from completep_sweep.model_check import coord_slope, lazy_slope, logits_of
from completep_sweep.parameterization import scaling_rules
from completep_sweep.parameterize import parameterize

transformers = pytest.importorskip("transformers")  # the [hf] extra, installed by `make test`
transformers.logging.set_verbosity_error()
BASE_WIDTH, BASE_DEPTH = 32, 2


def gpt2(width: int, depth: int):
    config = transformers.GPT2Config(
        n_embd=width, n_layer=depth, n_head=max(1, width // 16), vocab_size=256, n_positions=64,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def llama(width: int, depth: int):
    config = transformers.LlamaConfig(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=depth,
        num_attention_heads=max(1, width // 16), num_key_value_heads=max(1, width // 16), vocab_size=256,
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(config)


MODELS = {"gpt2": gpt2, "llama": llama}


def factory(make, lr: float):
    def build(parameterization: str, width: int, depth: int):
        model = make(width, depth)
        p = parameterize(
            model, parameterization, width=width, depth=depth, base_width=BASE_WIDTH, base_depth=BASE_DEPTH
        )
        return model, torch.optim.AdamW(p.param_groups(lr=lr, eps=1e-8), betas=(0.9, 0.95))

    return build


def test_every_tensor_of_gpt2_and_llama_lands_in_its_table1_group():
    g = parameterize(gpt2(32, 2), "completep", width=32, depth=2, base_width=32, base_depth=2).groups
    assert g["transformer.wte.weight"] == ("embedding", "weight")  # tied: lm_head is this tensor
    assert g["transformer.wpe.weight"] == ("embedding", "weight")
    assert g["transformer.h.1.ln_2.weight"] == ("block_norm", "gain")
    assert g["transformer.h.1.ln_2.bias"] == ("block_norm", "bias")
    assert g["transformer.h.0.attn.c_attn.weight"] == ("hidden_weight", "weight")
    assert g["transformer.h.0.mlp.c_proj.bias"] == ("hidden_bias", "bias")
    assert g["transformer.ln_f.weight"] == ("final_norm", "gain")
    assert "lm_head.weight" not in g
    g = parameterize(llama(32, 2), "completep", width=32, depth=2, base_width=32, base_depth=2).groups
    assert g["model.embed_tokens.weight"] == ("embedding", "weight")
    assert g["model.layers.0.input_layernorm.weight"] == ("block_norm", "gain")
    assert g["model.layers.1.self_attn.o_proj.weight"] == ("hidden_weight", "weight")
    assert g["model.layers.1.mlp.gate_proj.weight"] == ("hidden_weight", "weight")
    assert g["model.norm.weight"] == ("final_norm", "gain")
    assert g["lm_head.weight"] == ("unembedding", "weight")


@pytest.mark.parametrize("name", MODELS)
def test_at_the_base_shape_the_model_and_its_optimizer_step_are_bit_identical(name):
    torch.manual_seed(0)
    plain = MODELS[name](BASE_WIDTH, BASE_DEPTH)
    ours = copy.deepcopy(plain)
    p = parameterize(
        ours, "completep", width=BASE_WIDTH, depth=BASE_DEPTH, base_width=BASE_WIDTH, base_depth=BASE_DEPTH,
        init_std=None,
    )  # fmt: skip
    assert not p.handles  # every multiplier is exactly 1: no hook at all
    x = torch.randint(0, 256, (2, 16))
    assert torch.equal(logits_of(plain(x)), logits_of(ours(x)))
    steps = {
        "plain": torch.optim.AdamW(plain.parameters(), lr=1e-3, eps=1e-8, weight_decay=0.0),
        "ours": torch.optim.AdamW(p.param_groups(lr=1e-3, eps=1e-8), weight_decay=0.0),
    }
    for model, opt in ((plain, steps["plain"]), (ours, steps["ours"])):
        logits = logits_of(model(x))
        torch.nn.functional.cross_entropy(logits.reshape(-1, 256), x.roll(-1, 1).reshape(-1)).backward()
        opt.step()
    theirs = dict(plain.named_parameters())
    assert all(torch.equal(theirs[n], t) for n, t in ours.named_parameters())


@pytest.mark.parametrize("name", MODELS)
def test_at_a_larger_shape_every_tensor_gets_table1s_multipliers(name):
    width, depth = 64, 8
    torch.manual_seed(0)
    model = MODELS[name](width, depth)
    p = parameterize(
        model, "completep", width=width, depth=depth, base_width=BASE_WIDTH, base_depth=BASE_DEPTH
    )
    rules = scaling_rules("completep", width=width, depth=depth, base_width=BASE_WIDTH, base_depth=BASE_DEPTH)
    groups = {g["name"]: g for g in p.param_groups(lr=0.01, weight_decay=0.1, eps=1e-8)}
    m_n, m_l = width / BASE_WIDTH, depth / BASE_DEPTH
    assert groups["hidden_weight"]["lr"] == pytest.approx(0.01 / m_n)  # m_N^-1 · m_L^(α-1), α = 1
    assert groups["hidden_weight"]["eps"] == pytest.approx(1e-8 / m_n / m_l)
    assert groups["hidden_weight"]["weight_decay"] == pytest.approx(0.1 * m_n)
    assert groups["block_norm"]["weight_decay"] == 0.0 and groups["embedding"]["lr"] == 0.01
    assert len(p.handles) == 2 * depth + 1  # attention and MLP of every block, and the logits
    rows = {r["tensor"]: r for r in p.table(lr=0.01, weight_decay=0.1, eps=1e-8)}
    hidden = [r["init_std"] for r in rows.values() if r["group"] == "hidden_weight"]
    assert sum(hidden) / len(hidden) == pytest.approx(0.02 / math.sqrt(m_n), rel=0.05)
    assert rules.residual_multiplier == pytest.approx(1 / m_l) and rules.output_multiplier == 1 / m_n
    assert "hidden_weight" in p.describe(lr=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_the_hooks_apply_the_output_and_residual_multipliers(name):
    x = torch.randint(0, 256, (2, 16))
    torch.manual_seed(0)
    wide = MODELS[name](64, BASE_DEPTH)  # width only: the output multiplier 1/2, no residual one
    p = parameterize(
        wide, "completep", width=64, depth=BASE_DEPTH, base_width=BASE_WIDTH, base_depth=BASE_DEPTH
    )
    with torch.no_grad():
        scaled = logits_of(wide(x))
        p.remove()
        assert len(p.handles) == 0 and torch.equal(scaled, logits_of(wide(x)) * 0.5)
    torch.manual_seed(0)
    deep = MODELS[name](BASE_WIDTH, 8)  # depth only: every branch output times m_L^-1 = 1/4
    branches = [m for n, m in deep.named_modules() if n.rsplit(".", 1)[-1] in ("attn", "self_attn", "mlp")]
    raw, scaled = [], []

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    for m in branches:  # hooks run in the order registered: one before parameterize's, one after
        m.register_forward_hook(lambda _m, _a, out: raw.append(first(out).clone()))
    parameterize(deep, "completep", width=BASE_WIDTH, depth=8, base_width=BASE_WIDTH, base_depth=BASE_DEPTH)
    for m in branches:
        m.register_forward_hook(lambda _m, _a, out: scaled.append(first(out).clone()))
    with torch.no_grad():
        deep(x)
    assert len(raw) == len(scaled) == 16
    assert all(torch.equal(s, r * 0.25) for r, s in zip(raw, scaled))


def test_an_unplaced_tensor_is_an_error_naming_it_and_roles_place_it():
    model = gpt2(32, 2)
    model.transformer.h[0].gate = torch.nn.Parameter(torch.ones(32))
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.gate.*roles="):
        parameterize(model, "completep", width=32, depth=2, base_width=32, base_depth=2)
    p = parameterize(
        model, "completep", width=32, depth=2, base_width=32, base_depth=2, roles={"*.gate": "hidden_bias"}
    )
    assert p.groups["transformer.h.0.gate"] == ("hidden_bias", "bias")
    with pytest.raises(ValueError, match="depth=3 but the model has 2 blocks"):
        parameterize(gpt2(32, 2), "completep", width=32, depth=3, base_width=32, base_depth=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_the_depth_coordinate_check_on_a_huggingface_model_gives_the_papers_verdicts(name):
    build = factory(MODELS[name], lr=1e-3)
    for parameterization in ("sp", "mup", "alpha0.5", "completep"):
        slope = coord_slope(build, parameterization, axis="depth", values=[2, 4, 8, 16], base=BASE_WIDTH)
        low, high = expectation(parameterization, "depth")
        assert low <= slope <= high, (parameterization, slope)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_the_laziness_check_on_a_huggingface_model_gives_the_papers_slopes(name):
    build = factory(MODELS[name], lr=2.0**-7)
    for parameterization in ("alpha0.5", "completep"):
        slope = lazy_slope(build, parameterization, depths=[2, 4, 8, 16], width=BASE_WIDTH)
        assert abs(slope - expected_slope(parameterization)) <= TOLERANCE, (parameterization, slope)


def test_a_preferred_layout_is_tried_first_only_inside_and_the_known_ones_never_change():
    import dataclasses

    from completep_sweep import layouts

    model = gpt2(32, 2)
    default = layouts.detect(model)
    mine = dataclasses.replace(default, name="mine")
    known = dict(layouts.LAYOUTS)
    with layouts.preferring(mine):
        assert layouts.detect(model) is mine and dict(layouts.LAYOUTS) == known
    assert layouts.detect(model) is default and dict(layouts.LAYOUTS) == known
