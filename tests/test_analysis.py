"""Analysis on synthetic sweeps with known answers (the ``make_trials`` fixture, conftest.py):

loss(lr) = L0(depth) + c·(log2 lr − log2 opt(depth))² + noise, lr on a grid of powers of two;
lr above ``diverge_log2`` diverges.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from completep_sweep.analysis import KEY, analyze, swept_hps
from completep_sweep.parameterization import scaling_rules


def optimum_table(df, **kw):
    return analyze(df, **kw).optima


def hp_slice(df, *, parameterization, width, depth, hp):
    s = analyze(df).slices[hp]
    at = s[(s.parameterization == parameterization) & (s.width == width) & (s.depth == depth)]
    return at.drop(columns=list(KEY)).reset_index(drop=True)


def row(df, **where):
    mask = np.ones(len(df), bool)
    for k, v in where.items():
        mask &= df[k].to_numpy() == v
    assert mask.sum() == 1, where
    return df[mask].iloc[0]


def test_swept_hps_are_the_varying_numeric_config_columns(make_trials):
    df = make_trials(lambda d, w: -7.0)
    assert swept_hps(df) == ("lr",)
    df["init_std"] = np.where(df["depth"] > 4, 0.01, 0.02)
    assert swept_hps(df) == ("lr", "init_std")


def test_refined_optimum_beats_grid_argmin_between_grid_points(make_trials):
    truth = {2: -7.3, 4: -7.45, 8: -8.4, 16: -6.75, 32: -9.6}
    df = make_trials(lambda d, w: truth[d], noise=0.0005, seeds=(0,))
    optima = optimum_table(df)
    for depth, t in truth.items():
        r = row(optima, depth=depth)
        refined_err = abs(math.log2(r.optimum_refined) - t)
        grid_err = abs(math.log2(r.optimum) - t)
        assert refined_err < 0.1, (depth, refined_err)
        if abs(t - round(t)) >= 0.25:  # truth clearly between grid points
            assert refined_err < grid_err
        assert r.optimum == 2.0 ** round(t)
        assert not r.at_edge and r.n_points == 9 and r.n_seeds == 1


def test_the_basin_fit_is_exact_without_noise(make_trials):
    df = make_trials(lambda d, w: -7.3)
    r = optimum_table(df).iloc[0]
    assert math.log2(r.optimum_refined) == pytest.approx(-7.3, abs=1e-6)
    assert r.interval_method == "basin fit" and r.loss == pytest.approx(3.0 + 0.05 * 0.3**2)


def test_drifting_family_drifts_and_stable_family_transfers(make_trials):
    drift = make_trials(
        lambda d, w: -6.0 - math.log2(d),
        parameterization="mup",
        lr_log2=range(-14, -2),
        seeds=(0, 1, 2),
        noise=0.002,
    )
    stable = make_trials(lambda d, w: -7.2, parameterization="completep", seeds=(0, 1, 2), noise=0.002)
    a = analyze(pd.concat([drift, stable], ignore_index=True))
    mup = row(a.transfer, parameterization="mup", axis="depth")
    cp = row(a.transfer, parameterization="completep", axis="depth")
    assert mup.verdict == "drifts" and cp.verdict == "transfers"
    assert mup.slope == pytest.approx(-1.0, abs=0.05)  # octaves per doubling of depth
    assert mup.slope_low <= -1.0 <= mup.slope_high
    assert mup.shift_octaves == pytest.approx(-4.0, abs=0.2)  # over depth 2..32
    assert abs(cp.slope) < 0.05 and cp.slope_low > -0.5 and cp.slope_high < 0.5
    assert cp.tolerance == 0.5 and mup.n_shapes == 5 and mup.n_seeds == 3
    assert set(a.transfer["axis"]) == {"depth"}  # one width: no width row


def test_tolerance_changes_the_verdict(make_trials):
    # 0.25 octave per doubling over depth 2..32; three seeds make the intervals tight.
    df = make_trials(lambda d, w: -7.0 - 0.25 * math.log2(d), seeds=(0, 1, 2), noise=0.001)
    assert row(analyze(df, tolerance=0.4).transfer, axis="depth").verdict == "transfers"
    assert row(analyze(df, tolerance=0.1).transfer, axis="depth").verdict == "drifts"


def test_optimum_on_grid_edge_is_inconclusive(make_trials):
    df = make_trials(lambda d, w: -7.0 if d < 32 else -3.5, lr_log2=range(-10, -3), seeds=(0, 1))
    a = analyze(df)
    assert row(a.optima, depth=32).at_edge and not row(a.optima, depth=2).at_edge
    t = row(a.transfer, axis="depth")
    assert t.verdict == "inconclusive" and "edge" in t.reason and "32" in t.reason


def test_fewer_than_three_depths_is_inconclusive(make_trials):
    a = analyze(make_trials(lambda d, w: -7.0, depths=(2, 4)))
    t = row(a.transfer, axis="depth")
    assert t.verdict == "inconclusive" and "only 2 depths" in t.reason and "add a depth" in t.next_step
    assert math.isnan(t.slope_low)


def test_optima_that_scatter_off_any_line_are_inconclusive(make_trials):
    # Optima an octave or two apart with no trend: no line describes them, whatever its slope.
    scatter = {2: -7, 4: -8.5, 8: -6, 16: -8.5, 32: -6.5}
    t = row(
        analyze(
            make_trials(lambda d, w: scatter[d], lr_log2=range(-13, -2), noise=0.02, c=0.05, seeds=(0, 1, 2))
        ).transfer,
        axis="depth",
    )
    assert t.verdict == "inconclusive" and "own scatter about a line" in t.reason
    assert "seeds" in t.next_step and "bend" in t.next_step


@pytest.mark.full_bootstrap
def test_a_small_zigzag_beyond_the_noise_widens_the_interval_and_still_transfers(make_trials):
    # Optima a few tenths of an octave apart, far more than their tiny noise explains: the drift's
    # interval is at least what the scatter says (not the noise's), and the zigzag, well inside the
    # tolerance, still transfers.
    zigzag = {2: -7.0, 4: -7.3, 8: -6.9, 16: -7.25, 32: -7.0}
    a = analyze(
        make_trials(
            lambda d, w: zigzag[d], lr_log2=[x / 2 for x in range(-22, -5)], noise=0.002, seeds=(0, 1, 2)
        )
    )
    t = row(a.transfer, axis="depth")
    assert t.verdict == "transfers" and "own scatter" in t.reason
    mu = np.log2(a.optima.sort_values("depth")["optimum_refined"].to_numpy())
    depth_t = np.log2([2, 4, 8, 16, 32]) - 3
    resid = mu - np.polyval(np.polyfit(depth_t, mu, 1), depth_t)
    half = 3.182 * math.sqrt(resid @ resid / 3 / (depth_t @ depth_t))  # t(0.975, 3 dof)
    assert t.slope_high - t.slope_low >= 2 * half - 1e-9 and t.slope_high - t.slope_low < 1.0


@pytest.mark.full_bootstrap
def test_a_noisy_flat_optimum_is_inconclusive_and_says_how_many_seeds_would_decide(make_trials):
    t = row(
        analyze(
            make_trials(
                lambda d, w: -7.0,
                depths=(2, 4, 8, 16),
                lr_log2=range(-12, -2),
                noise=0.05,
                c=0.01,
                rng_seed=5,
                seeds=(0, 1),
            )
        ).transfer,
        axis="depth",
    )
    assert t.verdict == "inconclusive" and "spans 0" in t.reason, t.reason
    assert "seeds per point would decide it" in t.next_step and "completep-sweep run" in t.next_step


def test_one_seed_never_gives_a_firm_transfer_verdict(make_trials):
    t = row(analyze(make_trials(lambda d, w: -7.0, noise=0.001)).transfer, axis="depth")
    assert t.verdict == "inconclusive" and "one seed" in t.reason and "seed = [0, 1, 2]" in t.next_step


def test_diverged_trials_count_as_inf_and_in_n_diverged(make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), seeds=(0, 1), diverge_log2=-5)
    # One seed of one otherwise good point diverges: that point must become inf.
    i = df.index[(df.depth == 2) & (df.lr == 2.0**-7) & (df.seed == 1)][0]
    df.loc[i, ["status", "final_val_loss"]] = ["diverged", np.nan]
    optima = optimum_table(df)
    r2 = row(optima, depth=2)
    assert r2.n_diverged == 2 + 1  # lr 2^-4 for both seeds, plus the injected one
    assert r2.optimum != 2.0**-7  # the point with a diverged seed cannot be the optimum
    assert row(optima, depth=4).n_diverged == 2 and row(optima, depth=4).optimum == 2.0**-7
    s = hp_slice(df, parameterization="completep", width=64, depth=2, hp="lr")
    assert np.isinf(s.loc[s.lr == 2.0**-7, "loss"]).all()
    assert np.isinf(s.loc[s.lr > 2.0**-5, "loss"]).all() and s.n_diverged.sum() == 3


def test_error_trials_are_excluded_and_counted(make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8))
    i = df.index[(df.depth == 4) & (df.lr == 2.0**-7)][0]
    df.loc[i, ["status", "final_val_loss", "error"]] = ["error", np.nan, "boom"]
    a = analyze(df)
    r = row(a.optima, depth=4)
    assert r.n_error == 1 and r.n_points == 8 and r.n_diverged == 0
    assert a.n_error == 1


def test_missing_trials_are_handled(make_trials):
    df = make_trials(lambda d, w: -7.3, seeds=(0, 1), noise=0.001)
    drop = (df.depth == 8) & (df.lr == 2.0**-8) | (df.depth == 16) & (df.seed == 1) & (df.lr < 2.0**-9)
    a = analyze(df[~drop])
    r8 = row(a.optima, depth=8)
    assert r8.n_points == 8 and not r8.at_edge
    # Neighbours of the argmin are the tested ones, so the estimate stays near the truth.
    assert abs(math.log2(r8.optimum_refined) + 7.3) < 0.3
    assert row(a.optima, depth=16).n_points == 9
    assert row(a.transfer, axis="depth").verdict == "transfers"


def test_all_diverged_shape_gives_no_optimum_and_inconclusive(make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8, 16))
    bad = df.depth == 16
    df.loc[bad, ["status", "final_val_loss"]] = ["diverged", np.nan]
    a = analyze(df)
    r = row(a.optima, depth=16)
    assert math.isnan(r.optimum_refined) and np.isinf(r.loss) and r.at_edge and r.n_diverged == 9
    assert row(a.transfer, axis="depth").verdict == "inconclusive"
    json.dumps(a.to_json_dict(), allow_nan=False)


def test_other_hp_fixed_at_its_best_value(make_trials):
    good = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), extra={"init_std": 0.02})
    bad = make_trials(lambda d, w: -9.0, depths=(2, 4, 8), l0=lambda d, w: 3.5, extra={"init_std": 0.05})
    bad["trial_id"] += "-b"
    a = analyze(pd.concat([good, bad], ignore_index=True))
    assert a.hps == ("lr", "init_std")
    lr = row(a.optima, depth=4, hp="lr")
    assert lr.optimum == 2.0**-7 and lr.loss == pytest.approx(3.0)
    init = row(a.optima, depth=4, hp="init_std")
    assert init.optimum == 0.02 and init.n_points == 2 and init.at_edge  # only 2 values tested
    s = hp_slice(pd.concat([good, bad]), parameterization="completep", width=64, depth=4, hp="lr")
    assert (s.init_std == 0.02).all()


@pytest.mark.full_bootstrap
def test_optimum_intervals_cover_the_truth_with_several_seeds(make_trials):
    rng = np.random.default_rng(1)
    truth = {d: t for d, t in zip((2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32), rng.uniform(-8.5, -6.5, 12))}
    df = make_trials(lambda d, w: truth[d], depths=tuple(truth), seeds=range(6), noise=0.01, rng_seed=3)
    optima = optimum_table(df)
    covered, widths = 0, []
    for depth, t in truth.items():
        r = row(optima, depth=depth)
        assert r.interval_method == "basin fit" and r.n_seeds == 6
        assert r.interval_low <= r.optimum_refined <= r.interval_high
        covered += r.interval_low <= 2.0**t <= r.interval_high
        widths.append(math.log2(r.interval_high / r.interval_low))
    assert covered >= 10  # of 12, for 95% intervals
    assert 0 < np.median(widths) < 1.5  # informative, not vacuous


def test_bootstrap_is_deterministic(make_trials):
    df = make_trials(lambda d, w: -7.3, depths=(2, 4, 8), seeds=range(4), noise=0.01)
    pd.testing.assert_frame_equal(optimum_table(df), optimum_table(df))


def test_a_single_hp_value_per_side_falls_back_to_the_band(make_trials):
    # Two lr values per shape: no basin can be fitted; the 1% band stands in and says so.
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), lr_log2=(-8, -7), c=0.01)
    for r in optimum_table(df, band_tolerance=0.01).itertuples():
        assert r.interval_method == "band(rel 0.01)" and r.interval_low <= r.optimum <= r.interval_high


def test_regret_zero_where_optima_coincide_and_positive_where_not(make_trials):
    stable = make_trials(lambda d, w: -7.0, parameterization="completep", seeds=(0, 1), noise=0.001)
    drift = make_trials(
        lambda d, w: -6.0 - math.log2(d),
        parameterization="mup",
        lr_log2=range(-14, -2),
        seeds=(0, 1),
        noise=0.001,
    )
    a = analyze(pd.concat([stable, drift], ignore_index=True))
    cp = a.regret[a.regret.parameterization == "completep"]
    assert (cp.regret_percent < 0.1).all() and len(cp) == 5
    mup = a.regret[a.regret.parameterization == "mup"].set_index("depth")
    assert mup.loc[2, "regret_percent"] == 0
    # At depth 32 the base optimum (2^-7) is 4 octaves off: loss 3 + 0.05·16 = 3.8 vs 3.0.
    assert mup.loc[32, "regret_percent"] == pytest.approx(100 * 0.8 / 3.0, rel=0.05)
    assert mup.loc[32, "regret_low"] <= mup.loc[32, "regret_percent"] <= mup.loc[32, "regret_high"]
    assert (mup.loc[[4, 8, 16, 32], "regret_percent"].diff().dropna() > 0).all()
    assert (mup.base_depth == 2).all() and np.allclose(mup.base_optimum, 2.0**-7, rtol=0.02)


def test_diverged_trials_stay_out_of_the_basin_and_count_as_unstable(make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), lr_log2=range(-12, -3), seeds=(0, 1), noise=0.001)
    df.loc[(df.depth == 8) & (df.lr >= 2.0**-6), ["status", "final_val_loss"]] = ["diverged", np.nan]
    a = analyze(df)
    assert abs(math.log2(row(a.optima, depth=8).optimum_refined) + 7) < 0.1
    edges = a.stability_edges.set_index("depth")
    assert edges.loc[8, "max_stable"] < edges.loc[2, "max_stable"] and not edges.loc[8, "lower_bound"]


def test_regret_base_falls_back_to_smallest_depth_when_base_not_run(make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(4, 8, 16), base_width=32, base_depth=2)
    reg = analyze(df).regret
    assert (reg.base_depth == 4).all() and (reg.width == 64).all()


def test_savings_twenty_percent_fewer_flops(make_trials):
    a_, b_ = 5.0, -0.1  # L_ref(F) = a + b ln F
    ref = make_trials(lambda d, w: -7.0, parameterization="mup", l0=lambda d, w: a_ + b_ * math.log(1e12 * d))
    # CompleteP reaches any loss with 0.8× the FLOPs: L_cp(F) = L_ref(F / 0.8).
    cp = make_trials(
        lambda d, w: -7.0, parameterization="completep", l0=lambda d, w: a_ + b_ * math.log(1e12 * d / 0.8)
    )
    s = analyze(pd.concat([ref, cp], ignore_index=True)).savings.set_index("parameterization")
    assert s.loc["completep", "flops_saving_percent"] == pytest.approx(20.0, abs=2.0)
    assert s.loc["mup", "flops_saving_percent"] == pytest.approx(0.0, abs=1e-6)
    assert s.loc["completep", "r2"] > 0.99 and s.loc["completep", "caveat"] == ""
    assert (s.reference == "mup").all()


def test_savings_never_extrapolate(make_trials):
    ref = make_trials(
        lambda d, w: -7.0, parameterization="mup", l0=lambda d, w: 5.0 - 0.1 * math.log(1e12 * d)
    )
    # CompleteP reaches µP's loss with 100x fewer FLOPs: below the FLOPs it tested, so no percentage.
    cp = make_trials(
        lambda d, w: -7.0, parameterization="completep", l0=lambda d, w: 5.0 - 0.1 * math.log(1e14 * d)
    )
    s = analyze(pd.concat([ref, cp], ignore_index=True)).savings.set_index("parameterization")
    assert math.isnan(s.loc["completep", "flops_saving_percent"])
    assert s.loc["completep", "caveat"].startswith("n/a") and "extrapolate" in s.loc["completep", "caveat"]


def test_savings_caveat_and_empty_cases(make_trials):
    ref = make_trials(
        lambda d, w: -7.0, parameterization="mup", depths=(2, 4), l0=lambda d, w: 4.0 - 0.1 * math.log(d)
    )
    s = analyze(ref).savings
    assert len(s) == 1 and "only 2 shapes" in s.caveat.iloc[0]
    # One size only, or no reference: not applicable.
    assert analyze(
        make_trials(lambda d, w: -7.0, parameterization="mup", flops=lambda d, w: 1e12)
    ).savings.empty
    assert analyze(make_trials(lambda d, w: -7.0)).savings.empty


def test_to_json_dict_contract_and_strict_json(make_trials):
    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), diverge_log2=-5, seeds=(0, 1), noise=0.001)
    sp = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), parameterization="sp")  # alpha None
    d = analyze(pd.concat([df, sp], ignore_index=True)).to_json_dict()
    assert set(d) == {
        "optima",
        "transfer",
        "payoff",
        "stability",
        "stability_edges",
        "regret",
        "savings",
        "tolerance",
        "loss",
    }
    text = json.dumps(d, allow_nan=False)  # raises on NaN/Infinity
    back = json.loads(text)
    o = back["optima"][0]
    for k in (
        "parameterization",
        "width",
        "depth",
        "hp",
        "optimum",
        "optimum_refined",
        "interval",
        "loss",
        "at_edge",
        "n_seeds",
        "n_diverged",
    ):
        assert k in o
    assert len(o["interval"]) == 2 and isinstance(o["at_edge"], bool)
    t = back["transfer"][0]
    for k in (
        "parameterization",
        "hp",
        "axis",
        "slope",
        "slope_interval",
        "shift_octaves",
        "verdict",
        "tolerance",
        "next_step",
    ):
        assert k in t
    assert set(back["regret"][0]) >= {"parameterization", "width", "depth", "hp", "regret_percent"}
    alphas = {r["parameterization"]: r["alpha"] for r in back["optima"]}
    assert alphas == {"completep": 1.0, "sp": None}


def test_width_axis_and_fixed_slice(make_trials):
    df = make_trials(
        lambda d, w: -7.0 - math.log2(w / 64),
        width=(64, 128, 256, 512),
        depths=(2,),
        seeds=(0, 1),
        parameterization="sp",
    )
    deep = make_trials(lambda d, w: -7.0, width=64, depths=(4, 8), parameterization="sp", seeds=(0, 1))
    deep["trial_id"] += "-d"
    a = analyze(pd.concat([df, deep], ignore_index=True))
    w = row(a.transfer, axis="width")
    assert w.verdict == "drifts" and w.slope == pytest.approx(-1.0, abs=1e-6) and w.fixed_value == 2
    d = row(a.transfer, axis="depth")
    assert d.fixed_value == 64 and d.n_shapes == 3 and d.verdict == "transfers"


def test_the_target_shape_applies_the_rules(make_trials):
    from completep_sweep.answer import target

    df = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), width=256, base_width=256)
    a = analyze(df)
    t = target(a, width=512, depth=8).set_index("parameterization").loc["completep"]
    rules = scaling_rules("completep", width=512, depth=8, base_width=256, base_depth=2)
    lr = t["base_lr"]
    assert math.log2(lr) == pytest.approx(-7.0, abs=0.1)
    assert t["lr.hidden_weight"] == pytest.approx(lr * rules.groups["hidden_weight"].lr_mult)
    assert t["lr.hidden_weight"] == pytest.approx(lr * 0.5)  # worked example: m_N=2, m_L=4
    assert t["init_std.hidden_weight"] == pytest.approx(0.02 / math.sqrt(2))
    assert t["lr.embedding"] == pytest.approx(lr) and t["lr.block_norm"] == pytest.approx(lr)
    assert t["weight_decay.hidden_weight"] == pytest.approx(t["base_weight_decay"] * 2)
    assert t["eps.blocks"] == pytest.approx(1e-8 * 0.125) and t["eps.embedding"] == pytest.approx(1e-8)
    assert t["residual_multiplier"] == pytest.approx(0.25) and t["output_multiplier"] == pytest.approx(0.5)
    assert (t["width"], t["depth"], t["base_depth"]) == (512, 8, 2)


def test_analyze_rejects_bad_input(make_trials):
    df = make_trials(lambda d, w: -7.0, lr_log2=[-7])
    with pytest.raises(ValueError, match="no swept HP"):
        analyze(df)
    with pytest.raises(ValueError, match="final_val_loss"):
        analyze(df.drop(columns=["final_val_loss"]))
    with pytest.raises(ValueError, match="tolerance"):
        analyze(make_trials(lambda d, w: -7.0), tolerance=0)


def test_hp_grid_with_zero_weight_decay(make_trials):
    rows = []
    for wd, penalty in ((0.0, 0.0), (1e-4, 0.01), (1e-3, 0.02), (1e-2, 0.1)):
        t = make_trials(
            lambda d, w: -7.0,
            depths=(2, 4, 8),
            lr_log2=range(-9, -4),
            seeds=(0, 1),
            l0=lambda d, w, p=penalty: 3.0 + p,
            extra={"weight_decay": wd},
        )
        t["trial_id"] += f"-{wd}"
        rows.append(t)
    a = analyze(pd.concat(rows, ignore_index=True))
    wd = row(a.optima, depth=4, hp="weight_decay")
    assert wd.optimum == 0 and wd.optimum_refined == 0 and wd.at_edge and wd.interval_low == 0
    assert row(a.optima, depth=4, hp="lr").optimum == 2.0**-7
    t = row(a.transfer, hp="weight_decay", axis="depth")
    assert t.verdict == "inconclusive" and "no basin could be fitted" in t.reason
    json.dumps(a.to_json_dict(), allow_nan=False)


def test_provenance_columns_do_not_split_the_grid(make_trials):
    # Rows from two runs differ in worker, code_version, wall time, steps_done: still one slice.
    trials = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), diverge_log2=-5)
    trials["worker"] = np.resize(["node-a", "node-b"], len(trials))
    trials["code_version"] = np.resize(["v1", "v2", "v3", "v4"], len(trials))
    trials["steps_done"] = np.where(trials.status == "diverged", 10, 500)
    optima = analyze(trials).optima
    assert set(optima.n_points) == {len(range(-12, -3))}
    assert not optima.at_edge.any()
    assert optima.optimum.eq(2.0**-7).all()


@pytest.mark.full_bootstrap
@pytest.mark.parametrize("per_doubling, verdict", [(-0.05, "helps"), (0.05, "hurts"), (0.0, "flat")])
def test_depth_payoff_reads_the_best_loss_against_depth(make_trials, per_doubling, verdict):
    # The best loss moves by `per_doubling` nats per doubling of depth; the optimum stays put.
    rows = make_trials(
        lambda d, w: -7.0, seeds=(0, 1, 2), noise=0.002, l0=lambda d, w: 3.0 + per_doubling * math.log2(d)
    )
    p = row(analyze(rows).payoff, parameterization="completep")
    assert p.verdict == verdict, p.reason
    assert p.slope_low <= per_doubling <= p.slope_high


@pytest.mark.parametrize("per_doubling, verdict", [(-0.5, "falls"), (0.5, "rises"), (0.0, "stays")])
def test_stability_follows_the_edge_of_the_basin(make_trials, per_doubling, verdict):
    # The edge (the last value within 4% of the best loss above the optimum) sits a fixed distance
    # above an optimum that moves `per_doubling` octaves per doubling of depth.
    rows = make_trials(
        lambda d, w: -7.0 + per_doubling * math.log2(d / 2),
        seeds=(0, 1, 2),
        noise=0.002,
        lr_log2=[x / 2 for x in range(-28, -1)],
    )
    s = row(analyze(rows).stability, parameterization="completep")
    assert s.verdict == verdict, s.reason
    assert s.slope == pytest.approx(per_doubling, abs=0.2)
