"""Tiny user trainers for tests/test_user_trainer.py: what a user's ``trainer = "module:func"``
names. No training: a loss from a formula in lr and depth, so a sweep of them takes no time
(test_decided.py runs a decided search of ``drifting`` end to end)."""

import math

__version__ = "1.2.3"


def quadratic(config, report):
    """Loss with its optimum at lr = 2^-7, a little lower for deeper models; two curve points."""
    loss = 3.0 + 0.1 * (math.log2(config["lr"]) + 7) ** 2 - 0.01 * config["depth"]
    report(
        {"step": config["steps"] // 2, "train_loss": loss + 0.5, "val_loss": loss + 0.4, "lr": config["lr"]}
    )
    report({"step": config["steps"], "train_loss": loss + 0.1, "val_loss": loss})
    return {"final_val_loss": loss, "final_train_loss": loss + 0.1, "n_params": 1234}


def raises(config, report):
    report({"step": 1, "train_loss": 5.0})
    raise ZeroDivisionError(f"the user's bug at depth {config['depth']}")


def returns_nan(config, report):
    report({"step": 1, "train_loss": 5.0})
    return {"final_val_loss": float("nan")}


def varied(config, report):
    """A grid's worth of outcomes: lr above 0.1 diverges (NaN), depth 4 below it raises."""
    if config["lr"] > 0.1:
        return returns_nan(config, report)
    if config["depth"] == 4:
        return raises(config, report)
    return quadratic(config, report)


def one_argument(config):
    return {"final_val_loss": 1.0}


not_callable = 3


SEEN = []


def remember(config, report):
    """Keeps the config it was given (for the test that reads it back)."""
    SEEN.append(config)
    return {"final_val_loss": 2.5, "status": "ok"}


def wrong_keys(config, report):
    return {"final_loss": 2.5}


def bad_report(config, report):
    report({"step": 1, "val_los": 2.5})
    return {"final_val_loss": 2.5}


def drifting(config, report):
    """µP's picture, as a formula: the optimum falls half an octave per doubling of depth and deeper
    models are better; a small noise drawn from the trial's own (seed, lr, depth)."""
    import random

    x, depth = math.log2(config["lr"]), config["depth"]
    optimum = -7.0 - 0.5 * math.log2(depth / 2)
    z = random.Random(f"{config['seed']} {x} {depth}").gauss(0.0, 1.0)
    loss = 3.0 + 0.08 * (x - optimum) ** 2 - 0.03 * math.log2(depth) + 0.004 * z
    report({"step": config["steps"], "train_loss": loss + 0.1, "val_loss": loss})
    return {"final_val_loss": loss}
