import math

import pytest

from completep_sweep.train import train_trial


def test_short_trial_lowers_loss_on_builtin_corpus(tiny_trial):
    points = []
    result = train_trial(tiny_trial(), on_eval=points.append)
    assert result.status == "ok"
    assert [p.step for p in points] == [20, 40, 60]
    assert result.final_val_loss == points[-1].val_loss
    assert result.final_val_loss < math.log(256) - 1.0  # uniform guess is ln 256 ≈ 5.55
    assert points[-1].train_loss < points[0].train_loss
    assert result.steps_done == 60 and result.diverged_at_step is None
    assert result.flops > 0 and result.wall_time_s > 0 and result.device == "cpu"
    row = result.row()
    assert row["tokens"] == 60 * 8 * 32 and row["trial_id"] == result.config.trial_id


def test_absurd_lr_ends_diverged_without_exception(tiny_trial):
    result = train_trial(tiny_trial(parameterization="sp", width=64, lr=50.0, steps=100, warmup_steps=0))
    assert result.status == "diverged"
    assert result.diverged_at_step is not None and result.diverged_at_step < 100
    assert result.steps_done == result.diverged_at_step
    assert math.isnan(result.final_val_loss)


def test_clip_fraction_recorded(tiny_trial):
    off = train_trial(tiny_trial(steps=10, eval_interval=10))
    tiny_clip = train_trial(tiny_trial(steps=10, eval_interval=10, grad_clip=1e-6))
    assert off.clip_fraction == 0.0
    assert tiny_clip.clip_fraction == 1.0


def test_same_config_same_result(tiny_trial):
    a, b = train_trial(tiny_trial(steps=20)), train_trial(tiny_trial(steps=20))
    assert a.final_val_loss == b.final_val_loss and a.final_train_loss == b.final_train_loss


def test_trial_id_covers_result_fields_only(tiny_trial):
    base = tiny_trial()
    assert base.trial_id == tiny_trial().trial_id
    assert base.trial_id == base.replace(sweep="other").trial_id
    assert base.trial_id != base.replace(lr=base.lr * 2).trial_id
    assert base.trial_id != base.replace(parameterization="alpha0.5").trial_id
    assert base.trial_id != base.replace(seed=1).trial_id
    assert tiny_trial(parameterization="alpha1").trial_id == tiny_trial(parameterization="completep").trial_id


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", -1e-3),
        ("lr", 0.0),
        ("init_std", -0.1),
        ("steps", 0),
        ("width", 40),
        ("decay", "step"),
        ("beta2", 1.0),
        ("lr", float("nan")),
    ],
)
def test_bad_config_names_the_field(field, value, tiny_trial):
    with pytest.raises(ValueError, match=field if field != "width" else "head_dim"):
        tiny_trial(**{field: value})


def test_rules_of_a_trial_are_scaling_rules_at_its_shape(tiny_trial):
    from completep_sweep.parameterization import scaling_rules

    config = tiny_trial(parameterization="alpha0.5", width=64, depth=8, base_width=32, base_depth=2)
    assert config.rules() == scaling_rules("alpha0.5", width=64, depth=8, base_width=32, base_depth=2)
    assert tiny_trial().rules().residual_multiplier == 1.0  # the base shape: every factor 1


def test_setting_errors_share_one_base_with_the_field(tiny_trial):
    import pickle

    from completep_sweep.data import DataError, check_source
    from completep_sweep.errors import FieldError
    from completep_sweep.shape import ShapeError, check_heads
    from completep_sweep.trial import ConfigError

    caught = []
    for make in (
        lambda: tiny_trial(lr=-1.0),
        lambda: check_heads(40, 16),
        lambda: check_source("shakespeare", 100),
    ):
        with pytest.raises(FieldError) as info:
            make()
        caught.append(info.value)
    assert [type(e) for e in caught] == [ConfigError, ShapeError, DataError]
    assert [e.field for e in caught] == ["lr", "width", "vocab_size"]
    for e in caught:
        assert isinstance(e, ValueError) and str(e) == e.message
        back = pickle.loads(pickle.dumps(e))  # e.g. raised in a Ray worker
        assert type(back) is type(e) and (back.field, back.message) == (e.field, e.message)
