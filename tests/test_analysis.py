"""Analysis on synthetic sweeps with known answers (the ``make_trials`` fixture, conftest.py):

loss(lr) = L0(depth) + c·(log2 lr − log2 opt(depth))² + noise, lr on a grid of powers of two;
lr above ``diverge_log2`` diverges.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from completep_sweep.analysis import KEY, REGRET_COLUMNS, TRANSFER_COLUMNS, analyze, swept_hps
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


def test_the_optimum_is_the_parabola_through_the_best_tested_value_and_its_neighbours(make_trials):
    # Noise-free quadratic loss: the parabola through three tested values is the loss itself.
    df = make_trials(lambda d, w: -7.3, seeds=(0, 1))
    for r in optimum_table(df).itertuples():
        assert math.log2(r.optimum_refined) == pytest.approx(-7.3, abs=1e-9)
        assert r.optimum == 2.0**-7 and r.interval_method == "seed bootstrap"
        assert r.loss == pytest.approx(3.0 + 0.05 * 0.3**2)
        assert r.interval_low <= r.optimum_refined <= r.interval_high
        # never narrower than half a grid step either side of the best tested value
        assert math.log2(r.interval_low) <= -7.5 + 1e-9 and math.log2(r.interval_high) >= -6.5 - 1e-9


def test_drifting_family_must_re_tune_and_stable_family_keeps(make_trials):
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
    assert mup.verdict == "re-tune" and cp.verdict == "keep"
    # Keeping µP's base optimum 2^-7 at depth 32 (optimum 2^-11): 3 + 0.05·16 = 3.8 against 3.0.
    assert mup.deepest_regret == pytest.approx(100 * 0.8 / 3.0, rel=0.03)
    assert mup.deepest_regret_low > 1.0 and mup.worst_at == 32
    assert mup.base_optimum == pytest.approx(-7.0, abs=0.05)  # log2 of the base shape's optimum
    assert cp.worst_regret_high <= 1.0 and cp.base_optimum == pytest.approx(-7.2, abs=0.05)
    # The drift is reported beside the verdict: octaves per doubling of depth, with its interval.
    assert mup.slope == pytest.approx(-1.0, abs=0.05)
    assert mup.slope_low <= -1.0 <= mup.slope_high
    assert mup.shift_octaves == pytest.approx(-4.0, abs=0.2)  # over depth 2..32
    assert abs(cp.slope) < 0.05 and cp.slope_low > -0.5 and cp.slope_high < 0.5
    assert cp.regret_tolerance == 1.0 and mup.n_shapes == 5 and mup.n_seeds == 3
    assert set(a.transfer["axis"]) == {"depth"}  # one width: no width row


def test_tolerance_changes_the_verdict(make_trials):
    # 0.25 octave per doubling over depth 2..32: keeping the base optimum costs about 1.5% at depth 32
    # (2.5% at the tested value nearest it); three seeds and little noise make the intervals tight.
    df = make_trials(lambda d, w: -7.0 - 0.25 * math.log2(d), seeds=(0, 1, 2), noise=0.001)
    t = row(analyze(df).transfer, axis="depth")
    assert t.regret_tolerance == 1.0 and 1.0 < t.deepest_regret_low <= t.deepest_regret_high < 2.0
    assert t.verdict == "re-tune"
    assert row(analyze(df, tolerance=0.5).transfer, axis="depth").verdict == "re-tune"
    loose = row(analyze(df, tolerance=5).transfer, axis="depth")
    assert loose.verdict == "keep" and loose.regret_tolerance == 5
    # The regret interval ends below 2%, but the tested value nearest the base optimum costs more:
    # not a keep.
    assert row(analyze(df, tolerance=2).transfer, axis="depth").verdict == "inconclusive"


def test_base_optimum_on_the_grid_edge_is_inconclusive(make_trials):
    # The base shape's best tested value is its largest: the value to keep is only a bound.
    df = make_trials(lambda d, w: -3.5 if d == 2 else -7.0, lr_log2=range(-10, -3), seeds=(0, 1), noise=0.001)
    a = analyze(df)
    assert row(a.optima, depth=2).at_edge and not row(a.optima, depth=4).at_edge
    t = row(a.transfer, axis="depth")
    assert t.verdict == "inconclusive" and "edge" in t.reason and "widen the lr grid" in t.next_step
    assert t.base_optimum == -4.0


def test_a_deep_optimum_on_the_grid_edge_is_flagged_but_the_regret_is_measured(make_trials):
    # Only depth 32's optimum is past the grid; the base optimum 2^-7 was tested there, 3.5 octaves
    # from it: 0.05·3.5² = 0.61 nats above 3.0 against the best tested (2^-4: 3.0125), ~20% regret.
    df = make_trials(lambda d, w: -7.0 if d < 32 else -3.5, lr_log2=range(-10, -3), seeds=(0, 1))
    a = analyze(df)
    assert row(a.optima, depth=32).at_edge and not row(a.optima, depth=2).at_edge
    t = row(a.transfer, axis="depth")
    assert t.verdict == "re-tune" and t.worst_at == 32
    assert t.deepest_regret == pytest.approx(100 * (0.6125 - 0.0125) / 3.0125, rel=1e-6)


def test_two_depths_decide_the_transfer_but_not_the_payoff(make_trials):
    a = analyze(make_trials(lambda d, w: -7.0, depths=(2, 4), seeds=(0, 1), noise=0.001))
    t = row(a.transfer, axis="depth")
    assert t.verdict == "keep" and t.n_shapes == 2 and t.worst_regret_high <= 1.0
    p = row(a.payoff, parameterization="completep")
    assert p.verdict == "inconclusive" and "only 2 depths" in p.reason
    one_seed = row(analyze(make_trials(lambda d, w: -7.0, depths=(2, 4))).transfer, axis="depth")
    assert one_seed.verdict == "inconclusive" and "one seed" in one_seed.reason
    assert math.isnan(one_seed.slope_low) and math.isnan(one_seed.worst_regret_high)


def test_optima_that_scatter_without_a_trend_are_inconclusive(make_trials):
    # Optima an octave or two apart with no trend: keeping 2^-7 clearly costs more than 1% at depth
    # 16 (1.5 octaves off) but nothing at depth 32 (0.5 octave off): neither keep nor re-tune.
    scatter = {2: -7, 4: -8.5, 8: -6, 16: -8.5, 32: -6.5}
    a = analyze(
        make_trials(lambda d, w: scatter[d], lr_log2=range(-13, -2), noise=0.002, c=0.05, seeds=(0, 1, 2))
    )
    t = row(a.transfer, axis="depth")
    assert t.verdict == "inconclusive"
    assert t.worst_at == 16 and t.worst_regret_low > 1.0  # not a keep
    assert t.deepest_regret_high < 1.0  # not a re-tune
    assert abs(t.slope) < 0.25  # no trend to speak of


@pytest.mark.full_bootstrap
def test_a_small_zigzag_of_optima_inside_the_basin_is_kept(make_trials):
    # Optima a few tenths of an octave apart: each shape's interval covers its own optimum, and
    # keeping the base one costs far less than 1% anywhere.
    zigzag = {2: -7.0, 4: -7.3, 8: -6.9, 16: -7.25, 32: -7.0}
    a = analyze(
        make_trials(
            lambda d, w: zigzag[d], lr_log2=[x / 2 for x in range(-22, -5)], noise=0.002, seeds=(0, 1, 2)
        )
    )
    t = row(a.transfer, axis="depth")
    assert t.verdict == "keep" and t.worst_regret_high < 1.0
    assert t.slope_low <= 0 <= t.slope_high
    for depth, truth in zigzag.items():
        r = row(a.optima, depth=depth)
        assert math.log2(r.interval_low) <= truth <= math.log2(r.interval_high), (depth, r)
        assert abs(math.log2(r.optimum_refined) - truth) < 0.1


@pytest.mark.full_bootstrap
def test_a_noisy_flat_optimum_is_inconclusive_and_says_how_many_seeds_would_decide(make_trials):
    t = row(
        analyze(
            make_trials(
                lambda d, w: -7.0,
                depths=(2, 4, 8, 16),
                lr_log2=range(-12, -2),
                noise=0.04,
                c=0.01,
                rng_seed=5,
                seeds=(0, 1),
            )
        ).transfer,
        axis="depth",
    )
    assert t.verdict == "inconclusive" and "spans 1%" in t.reason, t.reason
    assert t.worst_regret_low <= 1.0 < t.worst_regret_high
    assert "seeds per point would decide it (now 2)" in t.next_step and "completep-sweep run" in t.next_step
    needed = int(re.search(r"about (\d+) seeds per point", t.next_step).group(1))
    assert needed > 2, t.next_step


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
    # Neighbours of the best are the tested ones (2^-9 and 2^-7 at depth 8), so the estimate stays
    # near the truth, and its interval reaches halfway to the tested neighbour below.
    assert abs(math.log2(r8.optimum_refined) + 7.3) < 0.3
    assert math.log2(r8.interval_low) <= -8.0 + 1e-9
    assert row(a.optima, depth=16).n_points == 9
    assert row(a.transfer, axis="depth").verdict == "keep"


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
        assert r.interval_method == "seed bootstrap" and r.n_seeds == 6
        assert r.interval_low <= r.optimum_refined <= r.interval_high
        covered += r.interval_low <= 2.0**t <= r.interval_high
        widths.append(math.log2(r.interval_high / r.interval_low))
    assert covered >= 10  # of 12, for 95% intervals
    assert 1.0 - 1e-9 <= min(widths) and np.median(widths) < 2.0  # at least a grid step, not vacuous


def test_bootstrap_is_deterministic(make_trials):
    df = make_trials(lambda d, w: -7.3, depths=(2, 4, 8), seeds=range(4), noise=0.01)
    pd.testing.assert_frame_equal(optimum_table(df), optimum_table(df))


def test_two_tested_values_give_the_better_one_and_an_edge(make_trials):
    # Two lr values per shape: no parabola; the best tested value, its interval reaching halfway to
    # the other value, and an edge (the grid must be widened), so no firm transfer verdict.
    df = make_trials(
        lambda d, w: -7.0, depths=(2, 4, 8), lr_log2=(-8, -7), c=0.01, seeds=(0, 1), noise=0.0001
    )
    a = analyze(df)
    for r in a.optima.itertuples():
        assert r.optimum == r.optimum_refined == 2.0**-7 and r.at_edge
        assert math.log2(r.interval_low) == pytest.approx(-7.5) and r.interval_high == 2.0**-7
    t = row(a.transfer, axis="depth")
    assert t.verdict == "inconclusive" and "edge" in t.reason


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
    # The base optimum 2^-7 diverges for one seed at depth 8: an infinite regret, null in JSON.
    i = df.index[(df.depth == 8) & (df.lr == 2.0**-7) & (df.seed == 1)]
    df.loc[i, ["status", "final_val_loss"]] = ["diverged", np.nan]
    sp = make_trials(lambda d, w: -7.0, depths=(2, 4, 8), parameterization="sp")  # alpha None
    a = analyze(pd.concat([df, sp], ignore_index=True))
    d = a.to_json_dict()
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
    assert back["tolerance"] == 1.0 and back["loss"] == "final_val_loss"
    o = back["optima"][0]
    for k in (
        "parameterization",
        "width",
        "depth",
        "hp",
        "optimum",
        "optimum_refined",
        "interval",
        "interval_method",
        "loss",
        "at_edge",
        "n_seeds",
        "n_diverged",
    ):
        assert k in o
    assert len(o["interval"]) == 2 and isinstance(o["at_edge"], bool)
    t = next(t for t in back["transfer"] if t["parameterization"] == "completep")
    assert set(t) == set(TRANSFER_COLUMNS) | {"slope_interval"}
    assert t["verdict"] == "re-tune" and t["worst_regret"] is None and t["worst_at"] == 8
    assert t["regret_tolerance"] == 1.0 and t["base_optimum"] == pytest.approx(-7.0, abs=0.05)
    assert len(t["slope_interval"]) == 2
    assert set(back["regret"][0]) == set(REGRET_COLUMNS)
    regret = {(r["parameterization"], r["depth"]): r for r in back["regret"]}
    assert regret[("completep", 8)]["regret_percent"] is None  # inf: keeping it diverges
    assert regret[("completep", 4)]["regret_percent"] == pytest.approx(0, abs=0.1)
    alphas = {r["parameterization"]: r["alpha"] for r in back["optima"]}
    assert alphas == {"completep": 1.0, "sp": None}


def test_width_axis_and_fixed_slice(make_trials):
    df = make_trials(
        lambda d, w: -7.0 - math.log2(w / 64),
        width=(64, 128, 256, 512),
        depths=(2,),
        seeds=(0, 1),
        noise=0.001,
        parameterization="sp",
    )
    deep = make_trials(
        lambda d, w: -7.0,
        width=64,
        depths=(4, 8),
        parameterization="sp",
        seeds=(0, 1),
        noise=0.001,
        rng_seed=3,
    )
    deep["trial_id"] += "-d"
    a = analyze(pd.concat([df, deep], ignore_index=True))
    w = row(a.transfer, axis="width")
    # Keeping 2^-7 at width 512 (optimum 2^-10): 0.05·3² = 0.45 nats over 3.0, 15%.
    assert w.verdict == "re-tune" and w.fixed_value == 2 and w.worst_at == 512
    assert w.deepest_regret == pytest.approx(15.0, rel=0.03)
    assert w.slope == pytest.approx(-1.0, abs=0.02) and w.n_shapes == 4
    d = row(a.transfer, axis="depth")
    assert d.fixed_value == 64 and d.n_shapes == 3 and d.verdict == "keep"
    assert set(a.regret["width"]) == {64, 128, 256, 512}  # each width's own depth line (of one shape)
    assert set(a.regret.loc[a.regret["width"].eq(64), "depth"]) == {2, 4, 8}


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
    # weight_decay 0 has no position in octaves: where it is the best value, the grid's own argmin
    # (0) stands, with the band of values within 1% of the best loss as its interval.
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
    assert wd.interval_method.startswith("band") and wd.loss == pytest.approx(3.0)
    assert row(a.optima, depth=4, hp="lr").optimum == 2.0**-7
    assert a.base_hps.set_index("parameterization").loc["completep", "weight_decay"] == 0
    t = row(a.transfer, hp="weight_decay", axis="depth")
    assert t.verdict == "inconclusive"
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


# ---------------------------------------------------------------- properties of the per-shape method
#
# Every shape's optimum comes from its own measured curve, and every regret from the base shape's
# curve and its own: the tests below check that on synthetic data of several kinds, including the
# simulated worlds of completep_sweep.synthetic (asymmetric and flat-bottomed basins, heavy-tailed
# and spiky noise, seeds that diverge where others do not).

OPTIMUM_NUMBERS = ["optimum", "optimum_refined", "interval_low", "interval_high", "loss", "at_edge"]
REGRET_NUMBERS = ["regret_percent", "regret_low", "regret_high", "regret_measured", "gain_percent"]
TRANSFER_NUMBERS = [
    "verdict",
    "worst_regret",
    "worst_regret_low",
    "worst_regret_high",
    "worst_at",
    "deepest_regret",
    "deepest_regret_low",
    "deepest_regret_high",
    "slope",
    "slope_low",
    "slope_high",
    "base_optimum",
]


def measured_curve(a, parameterization, width, depth, hp="lr"):
    """The shape's tested values (log2) and seed-mean losses (inf where a seed diverged), sorted."""
    s = a.slices[hp]
    at = s[(s.parameterization == parameterization) & (s.width == width) & (s.depth == depth)]
    at = at.sort_values(hp)
    return np.log2(at[hp].to_numpy(float)), at["loss"].to_numpy(float)


def numbers(df, columns, by):
    return df.sort_values(by)[columns].reset_index(drop=True)


def simulated(family_index: int, rng_seed: int, drift: float = 0.0, payoff: float = 0.0, **kw):
    from completep_sweep.synthetic import FAMILIES, simulate_study

    rows, _ = simulate_study(
        drift=drift, payoff=payoff, rng_seed=rng_seed, family=FAMILIES[family_index], **kw
    )
    return rows


def relabel(rows: pd.DataFrame, parameterization: str) -> pd.DataFrame:
    return rows.assign(
        parameterization=parameterization, trial_id=rows["trial_id"].astype(str) + f"-{parameterization}"
    )


def test_identical_rows_give_identical_optima_intervals_and_regrets(make_trials):
    # µP and CompleteP coincide at the base shape: the same rows there, different ones deeper.
    cp = make_trials(lambda d, w: -7.0, parameterization="completep", seeds=(0, 1, 2), noise=0.01)
    mup = make_trials(
        lambda d, w: -6.0 - math.log2(d),
        parameterization="mup",
        lr_log2=range(-12, -3),
        seeds=(0, 1, 2),
        noise=0.01,
        rng_seed=1,
    )
    at_base = mup.depth == 2
    mup.loc[at_base, "final_val_loss"] = cp.loc[cp.depth == 2, "final_val_loss"].to_numpy()
    a = analyze(pd.concat([cp, mup], ignore_index=True))
    o = a.optima[a.optima.depth == 2].set_index("parameterization")[OPTIMUM_NUMBERS]
    pd.testing.assert_series_equal(o.loc["mup"], o.loc["completep"], check_names=False)
    assert (
        math.isfinite(o.loc["mup", "interval_low"]) and o.loc["mup", "interval_low"] < o.loc["mup", "optimum"]
    )
    deep = a.optima[a.optima.depth == 32].set_index("parameterization")
    assert deep.loc["mup", "optimum"] != deep.loc["completep", "optimum"]  # the rows differ there
    r = a.regret[a.regret.depth == 2].set_index("parameterization")
    assert r.loc["mup", "base_optimum"] == r.loc["completep", "base_optimum"]


@pytest.mark.parametrize("seed", range(5))
def test_identical_rows_under_two_labels_give_identical_numbers(make_trials, seed):
    rng = np.random.default_rng(seed)
    if seed < 3:
        drift, centre = rng.uniform(-1, 1), rng.uniform(-8, -6)
        rows = make_trials(
            lambda d, w: centre + drift * math.log2(d / 2),
            depths=(2, 4, 8, 16),
            lr_log2=range(-13, -1),
            seeds=range(int(rng.integers(2, 5))),
            noise=float(rng.uniform(0.002, 0.03)),
            rng_seed=seed,
            diverge_log2=-2,
        )
    else:  # the simulated worlds: uneven bracket grids, diverging seeds
        rows = simulated(family_index=(0, 5)[seed - 3], rng_seed=seed, drift=-0.5)
    a = analyze(pd.concat([relabel(rows, "mup"), relabel(rows, "completep")], ignore_index=True))
    for table, columns, by in (
        (a.optima, OPTIMUM_NUMBERS, ["hp", "width", "depth"]),
        (a.regret, REGRET_NUMBERS, ["hp", "width", "depth"]),
        (a.transfer, TRANSFER_NUMBERS, ["hp", "axis", "fixed_value"]),
        (a.payoff, ["verdict", "slope", "slope_low", "slope_high"], ["hp", "fixed_value"]),
    ):
        mup, cp = (numbers(table[table.parameterization == p], columns, by) for p in ("mup", "completep"))
        assert len(mup) > 0
        pd.testing.assert_frame_equal(mup, cp)


def test_no_shape_moves_another_shapes_optimum_or_regret(make_trials):
    rows = make_trials(lambda d, w: -7.2 - 0.3 * math.log2(d / 2), seeds=(0, 1, 2), noise=0.01, rng_seed=4)
    at16 = rows.depth == 16
    noisier = rows.copy()
    noisier.loc[at16, "final_val_loss"] += np.random.default_rng(9).normal(0, 0.2, at16.sum())
    moved = make_trials(lambda d, w: -4.5, seeds=(0, 1, 2), noise=0.01, depths=(16,), rng_seed=5)
    shifted = pd.concat([rows[~at16], moved], ignore_index=True)  # depth 16's optimum moves up
    diverged = rows.copy()
    diverged.loc[at16 & (rows.seed == 1) & (rows.lr >= 2.0**-8), ["status", "final_val_loss"]] = [
        "diverged",
        np.nan,
    ]
    extra_seed = make_trials(lambda d, w: -7.0, seeds=(3,), noise=0.05, depths=(16,), rng_seed=8)
    more_seeds = pd.concat([rows, extra_seed], ignore_index=True)
    wider = make_trials(
        lambda d, w: -8.4, seeds=(0, 1, 2), noise=0.01, depths=(16,), lr_log2=range(-15, -1), rng_seed=6
    )
    wider_grid = pd.concat([rows[~at16], wider], ignore_index=True)
    before = analyze(rows)
    for changed in (noisier, shifted, diverged, more_seeds, wider_grid):
        after = analyze(changed)
        o0, o1 = (numbers(x.optima, OPTIMUM_NUMBERS, "depth") for x in (before, after))
        others = before.optima.sort_values("depth")["depth"].to_numpy() != 16
        assert not o0[~others].equals(o1[~others])  # depth 16 itself did change
        pd.testing.assert_frame_equal(o0[others], o1[others])
        r0, r1 = (numbers(x.regret, REGRET_NUMBERS, "depth") for x in (before, after))
        keep = [c for c in REGRET_NUMBERS if c != "gain_percent"]  # gain compares with the base only
        pd.testing.assert_frame_equal(r0.loc[others, keep], r1.loc[others, keep])


def _stars_studies(make_trials):
    yield analyze(make_trials(lambda d, w: -7.3 + 0.4 * math.log2(d), seeds=(0, 1), noise=0.03, rng_seed=2))
    # steep above, steep below, symmetric heavy-tailed, flat bottom with spikes, diverging seeds
    for family, drift in ((0, 0.5), (1, -0.5), (2, 0.0), (3, 0.5), (3, -0.5), (5, -1.0), (6, 0.5)):
        yield analyze(simulated(family, rng_seed=10 + family, drift=drift))


def test_every_star_lies_on_its_curve(make_trials):
    checked = 0
    for a in _stars_studies(make_trials):
        for o in a.optima[a.optima.hp == "lr"].itertuples():
            x, means = measured_curve(a, o.parameterization, o.width, o.depth)
            finite = np.isfinite(means)
            if not finite.any():
                continue
            b = int(np.argmin(np.where(finite, means, np.inf)))
            assert math.log2(o.optimum) == x[b]
            star = math.log2(o.optimum_refined)
            left = (x[b] - x[b - 1]) / 2 if b > 0 else 0.0
            right = (x[b + 1] - x[b]) / 2 if b < len(x) - 1 else 0.0
            assert x[b] - left - 1e-9 <= star <= x[b] + right + 1e-9, (o, x, means)
            gap = np.abs(x - star)
            nearest = np.flatnonzero(gap <= gap.min() + 1e-9)
            assert means[nearest].min() == means[finite].min(), (o, x, means)
            assert o.interval_low <= o.optimum_refined <= o.interval_high
            checked += 1
    assert checked >= 30


def _diverges_at(x, means, x0):
    """The loss at x0 diverged: measured there and inf, or (untested) next to a diverged value."""
    hit = np.flatnonzero(np.abs(x - x0) < 1e-9)
    if len(hit):
        return bool(np.isinf(means[hit[0]]))
    j = int(np.searchsorted(x, x0))
    return 0 < j < len(x) and bool(np.isinf(means[j - 1]) or np.isinf(means[j]))


def test_regret_is_bounded_by_what_was_measured_and_inf_exactly_where_the_base_optimum_diverged(
    make_trials,
):
    harmful = make_trials(
        lambda d, w: -6.0 - math.log2(d), lr_log2=range(-13, -3), seeds=(0, 1, 2), noise=0.01
    )
    harmful.loc[
        (harmful.depth == 8) & (harmful.lr == 2.0**-7) & (harmful.seed == 1), ["status", "final_val_loss"]
    ] = ["diverged", np.nan]
    studies = [analyze(harmful)] + [
        analyze(simulated(family, rng_seed=20 + r, drift=drift))
        for family in (0, 5)
        for r, drift in enumerate((-1.0, 1.0, 0.0))
    ]
    seen = {"inf": 0, "finite": 0, "outside": 0}
    for a in studies:
        for g in a.regret.itertuples():
            x, means = measured_curve(a, g.parameterization, g.width, g.depth, g.hp)
            x0 = math.log2(g.base_optimum)
            finite = means[np.isfinite(means)]
            if g.depth == g.base_depth:
                assert g.regret_percent == 0
                continue
            if not (x[0] - 1e-9 <= x0 <= x[-1] + 1e-9):
                assert math.isnan(g.regret_percent)
                seen["outside"] += 1
                continue
            assert math.isinf(g.regret_percent) == _diverges_at(x, means, x0), (g, x, means)
            if math.isinf(g.regret_percent):
                assert g.regret_low == g.regret_high == math.inf
                seen["inf"] += 1
            else:
                bound = 100 * (finite.max() - finite.min()) / finite.min()
                assert 0 <= g.regret_percent <= bound + 1e-9, (g, bound)
                seen["finite"] += 1
    assert seen["inf"] >= 2 and seen["finite"] >= 10, seen  # both cases were exercised


def test_harmful_advice_from_a_real_study_is_not_keep(make_trials):
    # As in a real µP depth study: the optimum falls an octave per doubling, keeping the base optimum
    # (2^-7) diverges for one seed at depth 16 and is 14% worse at depth 32.
    from completep_sweep.answer import recommendations, target

    c = 0.14 * 3.0 / 16  # 4 octaves off at depth 32: c·16 = 14% of the loss 3.0
    df = make_trials(
        lambda d, w: -6.0 - math.log2(d),
        parameterization="mup",
        lr_log2=range(-13, -3),
        seeds=(0, 1, 2),
        noise=0.01,
        c=c,
        rng_seed=7,
    )
    one_seed = (df.depth == 16) & (df.lr == 2.0**-7) & (df.seed == 1)
    df.loc[one_seed, ["status", "final_val_loss"]] = ["diverged", np.nan]
    a = analyze(df)
    t = row(a.transfer, axis="depth")
    assert t.verdict == "re-tune", t.reason
    assert t.deepest_regret == pytest.approx(14.0, abs=1.5) and t.deepest_regret_low > 1.0
    assert math.isinf(row(a.regret, depth=16).regret_percent)
    rec = row(recommendations(a), parameterization="mup")
    assert rec.verdict == "re-tune" and rec.deepest_depth == 32
    assert math.log2(rec.deepest_optimum) == pytest.approx(-11.0, abs=0.3)
    assert re.search(r"\bkeep\b", rec.sentence) is None and "re-tune" in rec.sentence, rec.sentence
    assert "not a firm keep" in target(a, depth=32).iloc[0]["warning"]


def test_a_keep_above_a_measured_stable_edge_is_not_recommended(make_trials):
    # With a 10% tolerance keeping 2^-7 is a keep (6% at depth 8), but at depth 8 the loss there is
    # more than 4% above the best: past the measured stable edge (2^-7.5), so advice never names it.
    from completep_sweep.answer import recommendations

    df = make_trials(
        lambda d, w: -7.0 - 0.5 * math.log2(d / 2),
        depths=(2, 4, 8),
        c=0.18,
        seeds=(0, 1, 2),
        noise=0.001,
        lr_log2=[x / 2 for x in range(-24, -7)],
    )
    a = analyze(df, tolerance=10)
    assert row(a.transfer, axis="depth").verdict == "keep"
    assert row(a.stability_edges, depth=8).max_stable == 2.0**-7.5
    rec = row(recommendations(a), parameterization="completep")
    assert rec.verdict == "inconclusive" and rec.tolerance == 10
    assert "above the measured stable edge at depth 8" in rec.sentence, rec.sentence
    assert row(recommendations(analyze(df)), parameterization="completep").verdict == "re-tune"


def _verdict_studies(make_trials):
    yield analyze(make_trials(lambda d, w: -7.0, seeds=(0, 1, 2), noise=0.001))  # keep, flat
    yield analyze(make_trials(lambda d, w: -6.0 - math.log2(d), lr_log2=range(-14, -2), seeds=(0, 1)))
    yield analyze(make_trials(lambda d, w: -7.0, lr_log2=range(-12, -2), noise=0.05, c=0.01, seeds=(0, 1)))
    for per_doubling in (-0.05, 0.05, 0.01):
        yield analyze(
            make_trials(
                lambda d, w: -7.0,
                seeds=(0, 1, 2),
                noise=0.002,
                l0=lambda d, w, s=per_doubling: 3.0 + s * math.log2(d),
            )
        )
    for family, drift, payoff in ((0, 0.5, 0.0), (5, -1.0, 0.0), (2, 0.0, 0.03), (5, 0.0, -0.03), (3, 0, 0)):
        yield analyze(simulated(family, rng_seed=30 + family, drift=drift, payoff=payoff))


def test_verdicts_are_exclusive_and_follow_their_intervals(make_trials):
    transfer_seen, payoff_seen = set(), set()
    for a in _verdict_studies(make_trials):
        for t in a.transfer.itertuples():
            assert t.verdict in {"keep", "re-tune", "inconclusive"}
            transfer_seen.add(t.verdict)
            regrets = a.regret[(a.regret.parameterization == t.parameterization) & (a.regret.hp == t.hp)]
            if t.verdict == "keep":
                assert (regrets.regret_high <= t.regret_tolerance).all()
                assert (regrets.regret_measured.dropna() <= t.regret_tolerance).all()
            if t.verdict == "re-tune":
                assert t.deepest_regret_low > t.regret_tolerance
        for p in a.payoff.itertuples():
            assert p.verdict in {"helps", "hurts", "flat", "inconclusive"}
            payoff_seen.add(p.verdict)
            excludes_zero = p.slope_high < 0 or p.slope_low > 0
            if excludes_zero:
                assert p.verdict != "flat"
            assert (p.verdict == "helps") == (p.slope_high < 0)
            assert (p.verdict == "hurts") == (p.slope_low > 0)
            if p.verdict == "flat":
                assert p.slope_low <= 0 <= p.slope_high
                levels = [
                    np.min(m[np.isfinite(m)])
                    for d in a.regret[a.regret.parameterization == p.parameterization].depth.unique()
                    for m in [measured_curve(a, p.parameterization, p.fixed_value, d, p.hp)[1]]
                ]
                band = 0.01 * float(np.mean(levels))
                assert -band <= p.slope_low and p.slope_high <= band
    assert transfer_seen == {"keep", "re-tune", "inconclusive"}
    assert {"helps", "hurts", "flat"} <= payoff_seen


REAL_ROWS = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "dense-whole-octave.csv"


@pytest.fixture(scope="module")
def real_rows():
    return pd.read_csv(REAL_ROWS)


def test_on_real_rows_every_star_is_within_1_5_percent_of_its_curves_best(real_rows):
    # The dense-grid study the analysis was not tuned on (benchmarks/dense-whole-octave.toml, 2 seeds).
    from completep_sweep.analysis.curve import Curve, loss_at

    a = analyze(real_rows)
    for o in a.optima.itertuples():
        shape = real_rows[(real_rows.parameterization == o.parameterization) & (real_rows.depth == o.depth)]
        curve = Curve.from_trials(
            shape.assign(_value=np.where(shape.status.eq("ok"), shape.final_val_loss, np.inf)), "lr"
        )
        best = np.min(curve.means[np.isfinite(curve.means)])
        at_star = loss_at(curve.x, curve.means, math.log2(o.optimum_refined))
        assert at_star <= 1.015 * best, (o.parameterization, o.depth, at_star, best)
    base = a.optima[a.optima.depth == 2].set_index("parameterization")["optimum_refined"]
    assert base["mup"] == base["completep"]  # the same model on the same batches at the base shape


@pytest.mark.parametrize("parameterization", ["mup", "completep"])
@pytest.mark.parametrize("shift", [-0.5, 0.5])
def test_real_rows_with_an_injected_drift_are_never_keep(real_rows, parameterization, shift):
    # Relabelled by half an octave per doubling (2 octaves at depth 32): keeping the base optimum
    # costs 4-9% there on the real curves.
    from completep_sweep.synthetic import shift_learning_rates

    rows = shift_learning_rates(real_rows[real_rows.parameterization == parameterization], shift)
    t = analyze(rows).transfer.iloc[0]
    assert t.verdict != "keep", t.reason
    unshifted = analyze(real_rows[real_rows.parameterization == parameterization]).transfer.iloc[0]
    assert t.slope == pytest.approx(unshifted.slope + shift, abs=0.15)
