import math

import pytest

from completep_sweep.parameterization import GROUPS, get_parameterization, scaling_rules

NAMES = ["sp", "mup", "alpha0.5", "completep"]

# docs/parameterizations.md worked example: base (256, 2) -> (512, 8), m_N = 2, m_L = 4.
WORKED = {
    # factor: (sp, mup, alpha0.5, completep)
    "hidden_init_std": (1, 0.7071, 0.7071, 0.7071),
    "hidden_lr": (1, 0.5, 0.25, 0.5),
    "block_norm_lr": (1, 1, 0.5, 1),
    "hidden_bias_lr": (1, 1, 0.5, 1),
    "hidden_wd": (1, 2, 2, 2),
    "block_eps": (1, 0.5, 0.25, 0.125),
    "residual": (1, 1, 0.5, 0.25),
    "output": (1, 0.5, 0.5, 0.5),
}


def worked_factors(name):
    r = scaling_rules(name, width=512, depth=8, base_width=256, base_depth=2)
    g = r.groups
    return {
        "hidden_init_std": g["hidden_weight"].init_std_mult,
        "hidden_lr": g["hidden_weight"].lr_mult,
        "block_norm_lr": g["block_norm"].lr_mult,
        "hidden_bias_lr": g["hidden_bias"].lr_mult,
        "hidden_wd": g["hidden_weight"].weight_decay_mult,
        "block_eps": g["block_norm"].eps_mult,
        "residual": r.residual_multiplier,
        "output": r.output_multiplier,
    }


@pytest.mark.parametrize("column, name", list(enumerate(NAMES)))
def test_worked_example(column, name):
    got = worked_factors(name)
    for factor, expected in WORKED.items():
        assert got[factor] == pytest.approx(expected[column], abs=1e-4), (name, factor)


@pytest.mark.parametrize("name", NAMES)
def test_worked_example_other_groups(name):
    r = scaling_rules(name, width=512, depth=8, base_width=256, base_depth=2)
    # ε of every block group scales together; outside blocks it stays at ε_base.
    assert (
        r.groups["hidden_weight"].eps_mult
        == r.groups["hidden_bias"].eps_mult
        == r.groups["block_norm"].eps_mult
    )
    for g in ("embedding", "final_norm", "unembedding"):
        assert r.groups[g].lr_mult == 1 and r.groups[g].eps_mult == 1
    for g in ("embedding", "unembedding"):
        assert r.groups[g].init_std_mult == 1 and r.groups[g].weight_decay_mult == 1
    for g in ("block_norm", "hidden_bias", "final_norm"):
        assert r.groups[g].init_std_mult is None and r.groups[g].weight_decay_mult == 0


@pytest.mark.parametrize("alpha", [0.5, 0.6, 0.75, 0.9, 1.0])
@pytest.mark.parametrize("shape", [(64, 4), (512, 8), (96, 3), (256, 128)])
def test_residual_times_depth_lr_is_inverse_depth_mult(alpha, shape):
    width, depth = shape
    r = scaling_rules(f"alpha{alpha}", width=width, depth=depth, base_width=32, base_depth=2)
    depth_lr_factor = r.groups["block_norm"].lr_mult  # m_L^(α−1), no width factor
    assert r.residual_multiplier * depth_lr_factor == pytest.approx(1 / r.depth_mult, rel=1e-12)
    hidden_depth_factor = r.groups["hidden_weight"].lr_mult * r.width_mult
    assert r.residual_multiplier * hidden_depth_factor == pytest.approx(1 / r.depth_mult, rel=1e-12)


@pytest.mark.parametrize("name", NAMES + ["alpha0.7"])
def test_base_shape_is_identity_exactly(name):
    r = scaling_rules(name, width=48, depth=3, base_width=48, base_depth=3)
    assert r.residual_multiplier == 1.0 and r.output_multiplier == 1.0
    for g in GROUPS:
        rule = r.groups[g]
        assert rule.lr_mult == 1.0 and rule.eps_mult == 1.0
        assert rule.init_std_mult in (1.0, None)
        assert rule.weight_decay_mult in (1.0, 0.0)


def test_sp_has_no_factor_at_any_shape():
    r = scaling_rules("sp", width=1024, depth=64, base_width=32, base_depth=2)
    assert r.residual_multiplier == r.output_multiplier == 1.0
    assert all(g.lr_mult == 1.0 and g.eps_mult == 1.0 for g in r.groups.values())


def test_mup_has_no_depth_factor():
    shallow = scaling_rules("mup", width=128, depth=2, base_width=32, base_depth=2)
    deep = scaling_rules("mup", width=128, depth=64, base_width=32, base_depth=2)
    assert shallow.groups == deep.groups
    assert deep.residual_multiplier == 1.0


def test_alpha_names():
    assert get_parameterization("alpha1") == get_parameterization("completep")
    assert get_parameterization("alpha1.0").name == "completep"
    assert get_parameterization("alpha0.50").name == "alpha0.5"
    assert get_parameterization("alpha0.75").alpha == 0.75
    assert get_parameterization("mup").alpha is None


@pytest.mark.parametrize("bad", ["alpha0.4", "alpha1.5", "alpha", "mu-p", "CompleteP", ""])
def test_unknown_names_say_what_is_allowed(bad):
    with pytest.raises(ValueError, match="alpha"):
        get_parameterization(bad)


@pytest.mark.parametrize("field", ["width", "depth", "base_width", "base_depth"])
def test_bad_shape_names_the_field(field):
    dims = dict(width=64, depth=4, base_width=32, base_depth=2)
    dims[field] = 0
    with pytest.raises(ValueError, match=field):
        scaling_rules("mup", **dims)


def test_hidden_init_variance_scales_as_inverse_width():
    for m in (2, 4, 8):
        r = scaling_rules("completep", width=32 * m, depth=2, base_width=32, base_depth=2)
        assert r.groups["hidden_weight"].init_std_mult ** 2 == pytest.approx(1 / m)
        assert math.isclose(r.output_multiplier, 1 / m)


def test_docs_worked_example_matches_the_rules():
    # docs/parameterizations.md states the worked example in prose tables: keep them honest.
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "parameterizations.md").read_text()
    section = text.split("## Worked example", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[1] not in ("SP", "---"):
            rows[cells[0]] = tuple(float(c) for c in cells[1:])
    labels = {
        "hidden init std": ["hidden_init_std"],
        "hidden LR": ["hidden_lr"],
        "block_norm & hidden_bias LR": ["block_norm_lr", "hidden_bias_lr"],
        "hidden weight decay λ": ["hidden_wd"],
        "block ε": ["block_eps"],
        "residual multiplier": ["residual"],
        "unembedding (output) multiplier": ["output"],
    }
    assert set(rows) == set(labels)
    got = {n: worked_factors(n) for n in NAMES}
    for label, factors in labels.items():
        for factor in factors:
            assert rows[label] == WORKED[factor], label
            assert rows[label] == pytest.approx(tuple(got[n][factor] for n in NAMES), abs=1e-4), label
