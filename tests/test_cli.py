import json

import pytest

from completep_sweep.cli import main


def test_explain_json_worked_example(cli):
    code, out, _ = cli(
        "explain",
        "--parameterization",
        "alpha0.5",
        "--width",
        "512",
        "--depth",
        "8",
        "--base-width",
        "256",
        "--base-depth",
        "2",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    assert set(d) == {
        "parameterization",
        "alpha",
        "width",
        "depth",
        "base_width",
        "base_depth",
        "width_mult",
        "depth_mult",
        "residual_multiplier",
        "output_multiplier",
        "groups",
    }
    assert d["alpha"] == 0.5 and d["width_mult"] == 2 and d["depth_mult"] == 4
    assert d["residual_multiplier"] == 0.5 and d["output_multiplier"] == 0.5
    assert set(d["groups"]) == {
        "embedding",
        "block_norm",
        "hidden_weight",
        "hidden_bias",
        "final_norm",
        "unembedding",
    }
    hw = d["groups"]["hidden_weight"]
    assert hw["lr_mult"] == 0.25 and hw["weight_decay_mult"] == 2 and hw["eps_mult"] == 0.25
    assert d["groups"]["block_norm"]["init_std_mult"] is None
    assert d["groups"]["final_norm"]["weight_decay_mult"] == 0


def test_explain_mup_alpha_is_null(cli):
    code, out, _ = cli(
        "explain",
        "--parameterization",
        "mup",
        "--width",
        "64",
        "--depth",
        "4",
        "--base-width",
        "32",
        "--base-depth",
        "2",
        "--json",
    )
    assert code == 0 and json.loads(out)["alpha"] is None


def test_explain_human_readable(cli):
    code, out, _ = cli(
        "explain",
        "--parameterization",
        "completep",
        "--width",
        "512",
        "--depth",
        "8",
        "--base-width",
        "256",
        "--base-depth",
        "2",
    )
    assert code == 0 and "hidden_weight" in out and "0.125" in out and "residual multiplier 0.25" in out


@pytest.mark.parametrize(
    "argv, names",
    [
        (
            [
                "explain",
                "--parameterization",
                "xp",
                "--width",
                "64",
                "--depth",
                "2",
                "--base-width",
                "32",
                "--base-depth",
                "2",
            ],
            "--parameterization",
        ),
        (
            [
                "explain",
                "--parameterization",
                "mup",
                "--width",
                "-64",
                "--depth",
                "2",
                "--base-width",
                "32",
                "--base-depth",
                "2",
            ],
            "--width",
        ),
        (
            ["explain", "--parameterization", "mup", "--width", "64", "--depth", "2", "--weight-decay", "x"],
            "--weight-decay",
        ),
        (["trial", "--parameterization", "mup", "--width", "64", "--depth", "2", "--lr", "-0.1"], "--lr"),
        (["trial", "--parameterization", "mup", "--width", "64", "--depth", "2", "--lr", "abc"], "--lr"),
        (
            [
                "trial",
                "--parameterization",
                "mup",
                "--width",
                "64",
                "--depth",
                "2",
                "--lr",
                "0.01",
                "--seed",
                "-1",
            ],
            "--seed",
        ),
        (["coord-check", "--axis", "height"], "--axis"),
        (["status", "demo", "--watch", "--interval", "0"], "--interval"),
        (["coord-check", "--axis", "depth", "--values", "2,x"], "--values"),
        (["coord-check", "--axis", "depth", "--parameterizations", "sp,nope"], "--parameterizations"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, names):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and names in err


@pytest.mark.parametrize(
    "argv, names",
    [
        (
            [
                "trial",
                "--model",
                "nosuch",
                "--parameterization",
                "mup",
                "--width",
                "64",
                "--depth",
                "2",
                "--lr",
                "0.01",
            ],
            "model",
        ),
        (["trial", "--parameterization", "mup", "--width", "40", "--depth", "2", "--lr", "0.01"], "head_dim"),
        (["coord-check", "--axis", "width", "--values", "32,40"], "--values"),
        (
            ["explain", "--parameterization", "mup", "--width", "40", "--depth", "2"],
            "head_dim",
        ),  # as `trial` refuses
        (
            ["explain", "--model", "nosuch", "--parameterization", "mup", "--width", "64", "--depth", "2"],
            "model",
        ),
    ],
)
def test_bad_values_after_parsing_exit_2(argv, names, cli):
    code, out, err = cli(*argv)
    assert code == 2 and names in err and len(err.strip().splitlines()) == 1 and out == ""


def test_explain_takes_the_base_shape_and_hps_from_the_preset(cli):
    code, out, _ = cli("explain", "--parameterization", "mup", "--width", "128", "--depth", "2")
    assert code == 0 and "base (32, 2): width_mult 4" in out  # models/tiny.toml: base 32 x 2
    assert "weight_decay 0," in out  # the preset's 0, not a generic 0.1
    code, out, _ = cli(
        "explain",
        "--parameterization",
        "mup",
        "--width",
        "128",
        "--depth",
        "2",
        "--base-width",
        "64",
        "--weight-decay",
        "0.1",
    )
    assert code == 0 and "width_mult 2" in out and "weight_decay 0.1" in out


def test_trial_warns_when_warmup_swallows_the_run(cli):
    short = (
        "trial --parameterization sp --width 32 --depth 1 --lr 0.01 --steps 4 --batch-size 2 --json".split()
    )
    code, out, err = cli(*short)
    assert code == 0 and "warmup_steps 50 >= steps 4" in err and json.loads(out)["steps"] == 4
    code, _, err = cli(*short, "--warmup-steps", "1")
    assert code == 0 and "warmup" not in err


def test_every_command_help_shows_examples_and_defaults(cli, capsys):
    from completep_sweep.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        text = sub.format_help()
        assert "examples:" in text and f"completep-sweep {name}" in text.split("examples:")[1], name
        flat = " ".join(text.split())  # argparse wraps lines anywhere
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                shown = f"(default: {action.default})" in flat or "default" in action.help
                assert shown, f"{name} {action.option_strings[0]}: default {action.default!r} not shown"
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    from completep_sweep import __version__

    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"completep-sweep {__version__}"


def test_trial_json(cli):
    code, out, _ = cli(
        "trial",
        "--parameterization",
        "completep",
        "--width",
        "64",
        "--depth",
        "2",
        "--lr",
        "0.01",
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    assert d["status"] == "ok" and d["final_val_loss"] > 0 and d["final_train_loss"] > 0
    assert d["parameterization"] == "completep" and d["width"] == 64 and d["steps"] == 10


def test_coord_check_json(cli):
    code, out, _ = cli(
        "coord-check",
        "--axis",
        "depth",
        "--values",
        "2,4,8",
        "--steps",
        "3",
        "--parameterizations",
        "mup,completep",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    assert d["axis"] == "depth" and d["values"] == [2, 4, 8] and d["steps"] == 3
    assert set(d["slopes"]) == set(d["passed"]) == {"mup", "completep"}
    assert d["slopes"]["mup"] > d["slopes"]["completep"]


def test_trial_json_diverged_is_valid_json(cli):
    code, out, _ = cli(
        "trial",
        "--parameterization",
        "sp",
        "--width",
        "64",
        "--depth",
        "2",
        "--lr",
        "50",
        "--steps",
        "30",
        "--batch-size",
        "4",
        "--json",
    )
    assert code == 0
    d = json.loads(out)  # strict JSON: NaN became null
    assert d["status"] == "diverged" and d["final_val_loss"] is None and d["diverged_at_step"] is not None


def test_unreachable_address_exits_2_before_writing(tmp_path, make_spec, cli):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = tmp_path / "results"
    code, _, err = cli(
        "run",
        str(make_spec("addr")),
        "--results",
        str(results),
        "--address",
        f"127.0.0.1:{port}",
        "--no-mlflow",
    )
    assert code == 2 and "--address" in err and not results.exists()
    code, _, err = cli("run", str(make_spec("addr")), "--results", str(results), "--address", "nonsense")
    assert code == 2 and "HOST:PORT" in err and not results.exists()


@pytest.mark.parametrize("device", ["gpu", "cuda:x"])
def test_bad_device_exits_2(capsys, device):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "trial",
                "--parameterization",
                "mup",
                "--width",
                "64",
                "--depth",
                "2",
                "--lr",
                "0.01",
                "--device",
                device,
            ]
        )
    assert exc.value.code == 2 and "--device" in capsys.readouterr().err


def test_submit_to_nothing_exits_2_naming_the_address(tmp_path, make_spec, cli):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = str(make_spec("sub"))
    code, _, err = cli("submit", spec, "--address", f"http://127.0.0.1:{port}")
    assert code == 2 and "--address" in err and len(err.strip().splitlines()) == 1
    assert "dashboard's address, e.g. http://HOST:8265" in err and "HOST:6379" not in err.split("(not")[0]
    code, _, err = cli("run", spec, "--address", f"127.0.0.1:{port}")  # run wants the GCS address
    assert code == 2 and "GCS address, e.g. HOST:6379" in err, err
    code, _, err = cli("submit", spec, "--address", "http://nohost")
    assert code == 2 and "--address" in err
