import textwrap
from pathlib import Path

import pytest

from completep_sweep.cli import main
from completep_sweep.sweep import SpecError, parse_sweep

GOOD = """
name = "ok-sweep"
model = "tiny"
parameterizations = ["sp", "mup", "alpha0.5", "completep"]
[grid]
width = [64]
depth = [2, 4, 8, 16]
lr = { log2_range = [-12, -4] }
init_std = [0.02]
seed = [0]
[train]
steps = 300
batch_size = 16
[resources]
cpus_per_trial = 1
gpus_per_trial = 0
"""


def test_reference_file_expands():
    sweep = parse_sweep(GOOD)
    assert len(sweep.trials) == 4 * 4 * 9
    lrs = sorted({t.lr for t in sweep.trials})
    assert lrs[0] == 2.0**-12 and lrs[-1] == 2.0**-4 and len(lrs) == 9
    t = sweep.trials[0]
    assert t.steps == 300 and t.batch_size == 16 and t.sweep == "ok-sweep" and t.model == "tiny"
    assert t.base_width == 32 and t.head_dim == 16  # from the preset
    assert len({t.trial_id for t in sweep.trials}) == len(sweep.trials)


def test_half_octave_steps_and_preset_fields_sweep():
    sweep = parse_sweep(
        GOOD.replace("lr = { log2_range = [-12, -4] }", "lr = { log2_range = [-8, -6], step = 0.5 }").replace(
            "init_std = [0.02]", "init_std = [0.01, 0.02]\nbase_width = [32, 64]"
        )
    )
    assert sorted({t.lr for t in sweep.trials}) == pytest.approx([2**-8, 2**-7.5, 2**-7, 2**-6.5, 2**-6])
    assert {t.base_width for t in sweep.trials} == {32, 64}
    assert len(sweep.trials) == 4 * 4 * 5 * 2 * 2


def test_model_overrides_and_integer_lr():
    sweep = parse_sweep(
        GOOD.replace("[train]", "[model_overrides]\nbase_width = 16\nseq_len = 32\n[train]").replace(
            "lr = { log2_range = [-12, -4] }", "lr = [1]"
        )
    )
    assert {t.base_width for t in sweep.trials} == {16} and {t.seq_len for t in sweep.trials} == {32}
    assert all(isinstance(t.lr, float) for t in sweep.trials)


def test_grid_extension_keeps_old_ids():
    small = parse_sweep(GOOD)
    big = parse_sweep(GOOD.replace("[-12, -4]", "[-13, -4]"))
    assert {t.trial_id for t in small.trials} < {t.trial_id for t in big.trials}


BAD = [
    # (description, replacement applied to GOOD or full text, field expected in the message)
    ("unknown top-level key", ('model = "tiny"', 'model = "tiny"\nmodle = 3'), "modle"),
    (
        "unknown grid key",
        ("init_std = [0.02]", "init_std = [0.02]\nlearning_rate = [0.1]"),
        "grid.learning_rate",
    ),
    ("unknown train key", ("steps = 300", "steps = 300\nstep = 3"), "train.step"),
    ("unknown resources key", ("cpus_per_trial = 1", "cpus_per_trial = 1\ncpu = 2"), "cpu"),
    (
        "unknown parameterization",
        ('"alpha0.5", "completep"]', '"alpha0.5", "completep", "ntk"]'),
        "parameterizations",
    ),
    ("alpha out of range", ('"alpha0.5", "completep"]', '"alpha0.3"]'), "parameterizations"),
    ("duplicate parameterization", ('"alpha0.5", "completep"]', '"mup"]'), "parameterizations"),
    ("empty parameterizations", ('["sp", "mup", "alpha0.5", "completep"]', "[]"), "parameterizations"),
    ("negative lr", ("lr = { log2_range = [-12, -4] }", "lr = [0.01, -0.001]"), "grid.lr"),
    ("zero init_std", ("init_std = [0.02]", "init_std = [0.0]"), "grid.init_std"),
    ("string lr", ("lr = { log2_range = [-12, -4] }", 'lr = ["fast"]'), "lr"),
    ("reversed log2_range", ("[-12, -4]", "[-4, -12]"), "grid.lr"),
    ("log2_range typo", ("log2_range = [-12, -4]", "log2range = [-12, -4]"), "lr"),
    ("log2_range one number", ("[-12, -4]", "[-12]"), "lr"),
    ("zero step", ("[-12, -4] }", "[-12, -4], step = 0 }"), "step"),
    ("empty depth list", ("depth = [2, 4, 8, 16]", "depth = []"), "grid.depth"),
    ("zero depth", ("depth = [2, 4, 8, 16]", "depth = [0, 2]"), "grid.depth"),
    ("width not multiple of head_dim", ("width = [64]", "width = [64, 72]"), "grid.width"),
    ("unknown model preset", ('model = "tiny"', 'model = "huge"'), "model"),
    ("missing name", ('name = "ok-sweep"', ""), "name"),
    ("bad name", ('name = "ok-sweep"', 'name = "../escape"'), "name"),
    ("negative steps", ("steps = 300", "steps = -5"), "steps"),
    ("negative cpus", ("cpus_per_trial = 1", "cpus_per_trial = -1"), "cpus_per_trial"),
    ("negative gpus", ("gpus_per_trial = 0", "gpus_per_trial = -0.5"), "gpus_per_trial"),
    (
        "missing data dir",
        ("[train]", '[model_overrides]\ndata = "/nonexistent/tokens"\n[train]'),
        "model_overrides.data",
    ),
    (
        "model key under train",
        ("steps = 300", "steps = 300\nbase_width = 16"),
        "train.base_width: belongs in [model_overrides]",
    ),
    ("bad decay", ("steps = 300", 'steps = 300\ndecay = "step"'), "decay"),
    ("key both fixed and swept", ("steps = 300", "steps = 300\nseed = 1"), "grid.seed"),
    ("duplicate grid values", ("depth = [2, 4, 8, 16]", "depth = [2, 4, 4]"), "grid.depth"),
    ("not TOML", ("[grid]", "[grid"), "TOML"),
    ("grid not a table", ("[grid]", "grid = 3\n[other]"), "grid"),
]


@pytest.mark.parametrize("desc, change, field", BAD, ids=[b[0] for b in BAD])
def test_malformed_sweep_files_exit_2_naming_the_field(tmp_path, capsys, desc, change, field):
    old, new = change
    assert old in GOOD, desc
    spec = tmp_path / "bad.toml"
    spec.write_text(GOOD.replace(old, new, 1))
    results = tmp_path / "results"
    for command in ("validate", "run"):
        code = main([command, str(spec), "--results", str(results)])
        err = capsys.readouterr().err.strip()
        assert code == 2, (desc, command, err)
        assert field in err, (desc, err)
        assert len(err.splitlines()) == 1, err
    assert not results.exists()  # nothing created before the input is known good


def test_missing_sweep_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "--results", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_status_of_unknown_target(tmp_path, capsys):
    assert main(["status", "nosuch", "--results", str(tmp_path)]) == 2
    assert "status: error: SWEEP:" in capsys.readouterr().err  # the same name as the usage line


def test_validate_prints_counts_and_estimate(tmp_path, capsys):
    spec = tmp_path / "good.toml"
    spec.write_text(GOOD)
    assert main(["validate", str(spec), "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "144 trials, 0 done, 144 pending" in out and "FLOPs" in out
    assert not (tmp_path / "r").exists()


def test_spec_error_type():
    with pytest.raises(SpecError, match="grid.lr"):
        parse_sweep(textwrap.dedent(GOOD).replace("lr = { log2_range = [-12, -4] }", "lr = [-1.0]"))


def test_shipped_sweep_files_are_valid(tmp_path):
    import numpy as np

    from completep_sweep.sweep import load_sweep

    sweeps = Path(__file__).resolve().parents[1] / "sweeps"
    demo = load_sweep(sweeps / "depth-transfer-demo.toml")
    assert demo.spec.search.method == "bracket" and demo.spec.search.seeds == 3  # seeds where they matter
    assert len(demo.trials) == 4 * 5 * 3 and {t.base_width for t in demo.trials} == {16}  # the first round
    assert {t.width for t in demo.trials} == {32}  # width above base: SP and µP differ
    assert {t.depth for t in demo.trials} == {1, 2, 4, 8, 16}
    study = load_sweep(sweeps / "cpu-depth-study.toml")
    assert {t.depth for t in study.trials} == {2, 4, 8, 16, 32} and {t.seed for t in study.trials} == {
        0,
        1,
        2,
    }
    for name in ("train.bin", "val.bin"):
        np.zeros(5000, dtype=np.uint16).tofile(tmp_path / name)
    paper_text = (
        (sweeps / "paper-depth-transfer.toml").read_text().replace("data/slimpajama_gpt2", str(tmp_path))
    )
    paper = parse_sweep(paper_text)
    assert len(paper.trials) == 4 * 7 * 4 * 3 and paper.spec.search.method == "bracket"  # 3 seeds per point
    t = paper.trials[0]
    assert (t.base_width, t.base_depth, t.head_dim, t.seq_len) == (256, 2, 64, 2048)
    assert t.tokens == 9155 * 16 * 2048
    with pytest.raises(SpecError, match="model_overrides.data"):
        load_sweep(sweeps / "paper-depth-transfer.toml")  # no token files on this machine: a clear error
    tune = load_sweep(sweeps / "base-tune.toml")
    assert (
        tune.spec.search.method == "optuna"
        and tune.trials == ()
        and tune.template.depth == tune.template.base_depth
    )
    transfer = load_sweep(sweeps / "transfer-from-base-tune.toml", resolve=lambda name, hp: 2.0**-4.6)
    assert transfer.spec.search.method == "bracket" and transfer.template.width == tune.template.width
    assert sorted({t.lr for t in transfer.trials}) == [
        2.0**e for e in (-7, -6, -5, -4, -3)
    ]  # centre rounded to 2^-5


@pytest.mark.parametrize(
    "change, field",
    [
        (("seed = [0]", "seed = [0.5]"), "seed"),
        (("steps = 300", "steps = 300\nwarmup_steps = 2.5"), "warmup_steps"),
        (("[train]", "[model_overrides]\nvocab_size = 128\n[train]"), "vocab_size"),
        (("seed = [0]", 'seed = [0]\ndata = ["shakespeare", "/nonexistent/tokens"]'), "data"),
    ],
)
def test_values_that_only_fail_in_workers_are_refused(change, field):
    with pytest.raises(SpecError, match=field):
        parse_sweep(GOOD.replace(*change))


def test_relative_token_dir_is_resolved_for_workers(tmp_path, monkeypatch):
    import numpy as np

    (tmp_path / "tok").mkdir()
    for name in ("train.bin", "val.bin"):
        np.zeros(5000, dtype=np.uint16).tofile(tmp_path / "tok" / name)
    monkeypatch.chdir(tmp_path)
    sweep = parse_sweep(
        GOOD.replace("[train]", '[model_overrides]\ndata = "tok"\nvocab_size = 1024\n[train]')
    )
    assert {t.data for t in sweep.trials} == {str(tmp_path / "tok")}
