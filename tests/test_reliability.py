"""No silently wrong answer, no lost trial, clear refusals up front (issue 9), without Ray.

The end-to-end faults (killed drivers, signals, a second live driver) are in test_faults.py (slow).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from completep_sweep.results import open_results
from completep_sweep.store import ResultStore
from completep_sweep.sweep import SpecError, parse_sweep
from completep_sweep.trial import TrialConfig


def fake_results(store: ResultStore, text: str, make_result, loss=lambda c: 3.0 + c.lr) -> list[TrialConfig]:
    """Rows for every trial of a sweep file, as `run` would leave them (no training)."""
    sweep = parse_sweep(text)
    store.write_spec(text)
    for c in sweep.trials:
        store.write_result(
            make_result(
                **{k: v for k, v in c.to_dict().items() if k != "lr"}, lr=c.lr, final_val_loss=loss(c)
            )
        )
    return list(sweep.trials)


# ---------------------------------------------------------------- 1. stale rows never mix in


def test_rows_of_an_earlier_version_are_stale_not_averaged(tmp_path, make_result, cli, stale_grid):
    store = ResultStore(tmp_path / "stale")
    old = fake_results(
        store,
        stale_grid.replace("steps = 40", "steps = 40\neval_batches = 4"),
        make_result,
        loss=lambda c: 9.0,
    )  # an earlier version of the sweep, far worse losses
    new = fake_results(store, stale_grid, make_result)
    assert len(store.load()) == len(old) + len(new) == 24
    results = open_results(store)
    assert set(results.rows.trial_id) == {c.trial_id for c in new}
    assert len(results.stale) == 12 and results.n_stale_compatible == 0 and results.pending == ()
    code, out, _ = cli("status", store.root)
    assert code == 0 and "12 ok, 0 diverged, 0 error of the 12 trials of the current sweep" in out
    assert "12 stale row(s)" in out
    code, out, _ = cli("report", store.root, "--json", "--no-mlflow")
    optima = json.loads(out)["optima"]
    assert {o["n_seeds"] for o in optima} == {1} and max(o["loss"] for o in optima) < 4  # no 9.0 mixed in


def test_include_stale_adds_only_rows_that_differ_in_swept_values(tmp_path, make_result, cli, stale_grid):
    store = ResultStore(tmp_path / "stale")
    wider = stale_grid.replace("0.03125]", "0.03125, 0.0625]")
    fake_results(store, wider, make_result)  # the grid used to have one more lr ...
    fake_results(
        store, stale_grid.replace("steps = 40", "steps = 80"), make_result
    )  # ... and a run of 80 steps
    current = fake_results(store, stale_grid, make_result)
    results = open_results(store)
    assert len(results.rows) == len(current) and results.n_stale_compatible == 4
    widened = open_results(store, include_stale=True)
    assert len(widened.rows) == len(current) + 4 and set(widened.rows.steps) == {40}
    assert len(widened.stale) == 12  # the 80-step rows stay out
    code, out, _ = cli("report", store.root, "--json", "--no-mlflow", "--include-stale")
    assert code == 0 and {o["n_points"] for o in json.loads(out)["optima"]} == {4}


# ---------------------------------------------------------------- 2. a damaged file never hides a trial


def _damage(path, how):
    if how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    elif how == "foreign schema":
        pq.write_table(pa.table({"x": [1, 2]}), path)
    elif how == "another trial":
        shutil.copyfile(sorted(p for p in path.parent.glob("*.parquet") if p != path)[0], path)


@pytest.mark.parametrize("how", ["truncated", "foreign schema", "another trial"])
@pytest.mark.parametrize("which", ["trials", "curves"])
def test_a_damaged_file_is_quarantined_and_its_trial_is_pending(release_fixture, capsys, cli, how, which):
    store = ResultStore(release_fixture)
    victim = sorted((release_fixture / which).glob("*.parquet"))[3]
    trial_id = victim.stem
    _damage(victim, how)
    assert trial_id not in store.completed_ids()  # `run` computes it again
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and trial_id in err and "quarantine" in err
    assert not (release_fixture / "trials" / victim.name).exists()
    assert (release_fixture / "quarantine" / which).is_dir()
    for command in (
        ["status", release_fixture],
        ["report", release_fixture, "--no-mlflow"],
        ["export", release_fixture, "--format", "csv"],
    ):
        code, _, err = cli(*command)
        assert code == 0 and "Traceback" not in err, (command, err)
    assert len(store.load()) == 47


# ---------------------------------------------------------------- 5. bad data, refused up front


def tokens(directory, train=None, val=None):
    if train is None:
        train = np.arange(3000) % 500
    if val is None:
        val = np.arange(1000) % 500
    directory.mkdir(exist_ok=True)
    np.asarray(train, dtype=np.uint16).tofile(directory / "train.bin")
    np.asarray(val, dtype=np.uint16).tofile(directory / "val.bin")
    return directory


TOKEN_SWEEP = """name = "tok"
model = "tiny"
parameterizations = ["completep"]
[grid]
lr = [0.0078125, 0.015625]
[model_overrides]
data = "{data}"
vocab_size = 512
seq_len = 32
{extra}
"""


@pytest.mark.parametrize(
    "damage, field",
    [
        (lambda d: np.array([1, 2, 900] * 100, dtype=np.uint16).tofile(d / "val.bin"), "vocab_size"),
        (lambda d: (d / "val.bin").write_bytes(b""), "data"),
        (lambda d: (d / "train.bin").write_bytes(b"\x01\x02\x03"), "data"),
        (lambda d: np.arange(20, dtype=np.uint16).tofile(d / "val.bin"), "seq_len"),
        (lambda d: (d / "val.bin").unlink(), "data"),
    ],
)
def test_bad_token_files_exit_2_before_anything_starts(tmp_path, cli, damage, field):
    data = tokens(tmp_path / "tok")
    damage(data)
    spec = tmp_path / "tok.toml"
    spec.write_text(TOKEN_SWEEP.format(data=data, extra=""))
    results = tmp_path / "results"
    for command in ("validate", "run"):
        code, out, err = cli(command, spec, "--results", results)
        assert code == 2 and f"model_overrides.{field}:" in err and len(err.strip().splitlines()) == 1, err
        assert "data: data:" not in err
    assert not results.exists()


@pytest.mark.parametrize("value", ['"x"', "nan", "-1.0", "0.0"])
def test_bad_attn_scale_exits_2(tmp_path, cli, value, stale_grid):
    spec = tmp_path / "s.toml"
    spec.write_text(stale_grid + f"[model_overrides]\nattn_scale = {value}\n")
    code, _, err = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 2 and "attn_scale" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- 8. changed data, new trials


def test_token_file_contents_are_part_of_the_trial_id(tmp_path, stale_grid):
    data = tokens(tmp_path / "tok")
    text = TOKEN_SWEEP.format(data=data, extra="")
    first = parse_sweep(text).ids
    os.utime(data / "train.bin", ns=(1, 1))  # touched, same tokens: same trials
    assert parse_sweep(text).ids == first
    tokens(data, train=(np.arange(3000) * 7) % 500)  # re-tokenized: new trials
    second = parse_sweep(text).ids
    assert second.isdisjoint(first)
    builtin = parse_sweep(stale_grid)  # the built-in corpus keeps the ids every earlier release computed
    assert all(t.data_fingerprint == "" for t in builtin.trials)


# ---------------------------------------------------------------- 4, 6, 9: resources, lock, paths


def test_more_cpus_than_the_machine_has_exit_2_before_ray(tmp_path, cli, stale_grid):
    spec = tmp_path / "s.toml"
    spec.write_text(stale_grid + "[resources]\ncpus_per_trial = 4096\n")
    code, _, err = cli("run", spec, "--results", tmp_path / "r", "--no-mlflow")
    assert code == 2 and "resources.cpus_per_trial = 4096" in err and not (tmp_path / "r").exists()
    code, out, _ = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 0 and "would refuse" in out


def test_a_live_driver_holds_the_folder_and_a_dead_one_does_not(tmp_path, cli, stale_grid):
    spec = tmp_path / "s.toml"
    spec.write_text(stale_grid)
    store = ResultStore(tmp_path / "r" / "stale")
    with store.lock(command="completep-sweep run s.toml"):
        code, _, err = cli("run", spec, "--results", tmp_path / "r", "--no-mlflow")
        assert code == 2 and f"pid {os.getpid()}" in err and "in use by a running driver" in err
        code, _, err = cli("sync", store.root, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
        assert code == 2 and "in use" in err
    # A driver that died holding the lock (SIGKILL) leaves the file; its lock went with it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom completep_sweep.store import "
            "ResultStore\nwith ResultStore(sys.argv[1]).lock('x'):\n print('held', flush=True)\n"
            " time.sleep(600)",
            str(store.root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert (store.root / ".driver.lock").exists()
    with store.lock():
        pass  # taken over


def test_results_that_is_a_file_exits_2(tmp_path, cli, stale_grid):
    spec = tmp_path / "s.toml"
    spec.write_text(stale_grid)
    (tmp_path / "afile").write_text("x")
    code, _, err = cli("run", spec, "--results", tmp_path / "afile", "--no-mlflow")
    assert code == 2 and "--results" in err and "is a file" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; test_faults.py runs this as nobody")
def test_read_only_results_exit_2(tmp_path, cli, stale_grid):
    spec = tmp_path / "s.toml"
    spec.write_text(stale_grid)
    results = tmp_path / "ro"
    results.mkdir()
    results.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, _, err = cli("run", spec, "--results", results, "--no-mlflow")
    finally:
        results.chmod(0o755)
    assert code == 2 and "--results" in err and "cannot write" in err


# ---------------------------------------------------------------- 10. small things


def test_validate_counts_log2_axes_and_estimates_with_overhead(tmp_path, cli, stale_grid):
    # 4 x 2 x 6 = 48 one-step trials: FLOPs alone would say a second; each trial costs over 1.5 s.
    spec = tmp_path / "s.toml"
    spec.write_text(
        stale_grid.replace("lr = [0.0078125, 0.015625, 0.03125]", "lr = { log2_range = [-9, -4] }").replace(
            "steps = 40", "steps = 1\nwarmup_steps = 0\neval_interval = 1"
        )
    )
    code, out, _ = cli("validate", spec, "--results", tmp_path / "r")
    assert code == 0 and "lr x6" in out and "24 trials" in out
    about = out.split("about ")[1].split(" ")[0]  # e.g. 0m31s
    minutes, seconds = (
        (int(x) for x in about.rstrip("s").split("m")) if "m" in about else (0, int(about[:-1]))
    )
    assert 60 * minutes + seconds >= 24 * 1.5 / (os.cpu_count() or 1)


def test_result_files_are_readable_by_others(tmp_path, make_result):
    old = os.umask(0o022)
    try:
        store = ResultStore(tmp_path / "s")
        store.write_result(make_result())
    finally:
        os.umask(old)
    for path in store.root.rglob("*.parquet"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["mlflow.db", "mlartifacts"])
def test_names_of_the_mlflow_store_are_refused(name, stale_grid):
    with pytest.raises(SpecError, match="MLflow"):
        parse_sweep(stale_grid.replace('name = "stale"', f'name = "{name}"'))


def test_an_empty_preset_is_refused(tmp_path, stale_grid):
    preset = tmp_path / "empty.toml"
    preset.write_text("")
    with pytest.raises(SpecError, match="missing base_depth, base_width"):
        parse_sweep(stale_grid.replace('model = "tiny"', f'model = "{preset}"'))
