import pytest

from completep_sweep.coord_check import run_coord_check
from completep_sweep.presets import preset_config


@pytest.fixture(scope="module")
def base():
    return preset_config("tiny", parameterization="sp", width=32, depth=2)


def test_depth_check_sp_mup_grow_alpha_family_flat(base):
    result = run_coord_check(
        base,
        axis="depth",
        values=[2, 4, 8, 16],
        seeds=(0,),
        parameterizations=["sp", "mup", "alpha0.5", "completep"],
    )
    s = result.slopes
    assert s["sp"] > 0.4 and s["mup"] > 0.4
    assert abs(s["alpha0.5"]) < 0.25 and abs(s["completep"]) < 0.25
    assert all(result.passed.values())
    df = result.records
    assert {"embedding", "block0.attn", "block15.mlp", "residual", "logits"} <= set(df.site)
    # CompleteP scales each of the L branches by 1/L: at step 0 its residual stream shrinks with depth.
    init = df[(df.site == "residual") & (df.step == 0)].groupby(["parameterization", "value"]).mean_abs.mean()
    assert init["completep"][16] < init["completep"][2] < init["mup"][16]


def test_width_check_mup_completep_flat_sp_grows(base):
    result = run_coord_check(
        base, axis="width", values=[32, 64, 128], seeds=(0,), parameterizations=["sp", "mup", "completep"]
    )
    assert abs(result.slopes["mup"]) < 0.25 and abs(result.slopes["completep"]) < 0.25
    assert result.slopes["sp"] > 0.4
    assert result.passed == {"sp": True, "mup": True, "completep": True}
