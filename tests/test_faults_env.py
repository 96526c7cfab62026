"""Faults of the environment around a sweep, from reliability round 3 (issue 17): token files of the
wrong width or kind, a `ui` port that is taken, privileged or out of range, an out-of-memory trial
whose size went unsaid, and `validate`'s memory estimate.

Bad input ends before any compute in one line naming the field (or file) and the fix, exit 2.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
from types import SimpleNamespace

import numpy as np
import pytest

from completep_sweep.data import DataError, check_source


def sweep_text(data, vocab: int) -> str:
    return f"""name = "tok"
model = "tiny"
parameterizations = ["completep"]
[grid]
lr = [0.0078125, 0.015625]
[model_overrides]
data = "{data}"
vocab_size = {vocab}
seq_len = 32
"""


def _ids(n: int = 20_000, top: int = 500) -> np.ndarray:
    """Token ids as a corpus has them: Zipf-like, id 0 among the most frequent."""
    rng = np.random.default_rng(0)
    return np.minimum(rng.zipf(1.3, n) - 1, top - 1)


def _write(directory, train: np.ndarray, val: np.ndarray | None = None):
    directory.mkdir(exist_ok=True)
    train.tofile(directory / "train.bin")
    (train[: len(train) // 4] if val is None else val).tofile(directory / "val.bin")
    return directory


def _refused(cli, tmp_path, data, field: str, *needles: str, vocab: int = 512) -> str:
    """validate and run exit 2 with one line naming the field and every needle; nothing written."""
    spec, results = tmp_path / "tok.toml", tmp_path / "results"
    spec.write_text(sweep_text(data, vocab))
    for argv in (("validate",), ("run", "--no-mlflow")):
        code, _, err = cli(*argv, spec, "--results", results)
        line = err.strip()
        assert code == 2 and len(line.splitlines()) == 1, (argv, err)
        assert f"model_overrides.{field}:" in line, line
        for needle in needles:
            assert needle in line, (needle, line)
    assert not results.exists()
    return line


# ---------------------------------------------------------------- token files of the wrong width


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_wide_integer_token_files_are_refused_naming_the_file(tmp_path, cli, dtype):
    # Every id is below vocab_size, so only the layout gives these away (ids interleaved with 0s).
    data = _write(tmp_path / "tok", _ids().astype(dtype))
    line = _refused(cli, tmp_path, data, "data", "train.bin", np.dtype(dtype).name, "dtype=np.uint16")
    assert "does not look like uint16 token ids" in line


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda: _ids(top=256).astype(np.float32), ("float32",)),  # byte-sized ids: low halves all 0
        (lambda: _ids(top=50_000).astype(np.float32), ("float32", "vocab_size 512")),  # ids > vocab
        (lambda: np.random.default_rng(1).standard_normal(20_000).astype(np.float32), ("float32",)),
    ],
    ids=["float32-small-ids", "float32-large-ids", "float32-noise"],
)
def test_float_token_files_blame_the_file_not_vocab_size(tmp_path, cli, make, needles):
    data = _write(tmp_path / "tok", make())
    line = _refused(cli, tmp_path, data, "data", "train.bin", "does not look like uint16", *needles)
    assert "raise vocab_size" not in line


def test_a_text_file_is_refused_as_text(tmp_path, cli):
    data = tmp_path / "tok"
    data.mkdir()
    text = b"To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    (data / "train.bin").write_bytes(text * 200)
    (data / "val.bin").write_bytes(text * 50)
    _refused(cli, tmp_path, data, "data", "train.bin", "looks like text", "tokenize it", vocab=65536)


def test_real_uint16_tokens_pass_even_with_many_zeros(tmp_path):
    ids = _ids()
    ids[np.random.default_rng(2).random(len(ids)) < 0.6] = 0  # padding-heavy, yet uint16
    for name, train in {
        "zipf": ids,
        "consecutive": np.arange(20_000) % 500,  # even/odd positions hold even/odd ids
        "all-zero": np.zeros(20_000, dtype=int),
    }.items():
        check_source(str(_write(tmp_path / name, train.astype(np.uint16))), 512, 32)


def test_a_small_vocabulary_still_blames_vocab_size(tmp_path, cli):
    data = _write(tmp_path / "tok", _ids(top=5000).astype(np.uint16))
    line = _refused(cli, tmp_path, data, "vocab_size", "train.bin", "raise vocab_size")
    assert "does not look like" not in line


def test_scans_cached_before_the_width_check_are_redone(tmp_path, monkeypatch):
    data = _write(tmp_path / "tok", _ids().astype(np.int32))
    cache = tmp_path / "xdg"
    entries = {}
    for split in ("train", "val"):
        file = (data / f"{split}.bin").resolve()
        stat = file.stat()
        key = f"{file}:{stat.st_size}:{stat.st_mtime_ns}"
        entries[key] = {"tokens": stat.st_size // 2, "max_id": 499, "sha256": "0" * 64}  # the old shape
    (cache / "completep-sweep").mkdir(parents=True)
    (cache / "completep-sweep" / "token-files.json").write_text(json.dumps(entries))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    with pytest.raises(DataError, match="int32") as e:  # not a KeyError on the missing fields
        check_source(str(data), 512, 32)
    assert e.value.field == "data"


# ---------------------------------------------------------------- ui ports


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """A refused port must never reach the server: were the check gone, fail fast instead of serving."""
    import completep_sweep.tracking.ui as ui

    def start(*args, **kwargs):
        raise AssertionError("the MLflow server was started")

    monkeypatch.setattr(ui, "run_ui", start)


def test_ui_on_a_port_in_use_exits_2_naming_the_port(tmp_path, cli):
    with socket.socket() as holder:  # another server, as far as anyone can tell
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = cli("ui", "--port", port, "--results", tmp_path / "results")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"--port {port}: already in use" in err and f"--port {port + 1}" in err
    assert not (tmp_path / "results").exists()  # refused before the server (or its folder) existed


@pytest.mark.parametrize("port", ["70000", "65536"])
def test_ui_port_out_of_range_exits_2(tmp_path, cli, port):
    code, _, err = cli("ui", "--port", port, "--results", tmp_path / "results")
    assert code == 2 and "--port" in err and "1-65535" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_port_number_argument_type():
    from completep_sweep.cli_args import port_number

    assert port_number("5000") == 5000 and port_number("65535") == 65535
    for bad in ("0", "70000", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            port_number(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind privileged ports")
def test_ui_on_a_privileged_port_exits_2(tmp_path, cli):
    code, _, err = cli("ui", "--port", 81, "--results", tmp_path / "results")
    assert code == 2 and "--port 81: ports below 1024 need root" in err and ">= 1024" in err


def test_ui_bind_not_permitted_exits_2(tmp_path, cli, monkeypatch):
    # The same refusal as a non-root user on port 81, where the tests run as root.
    def refuse(self, address):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "bind", refuse)
    code, _, err = cli("ui", "--port", 81, "--results", tmp_path / "results")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--port 81: ports below 1024 need root; use a port >= 1024" in err


# ---------------------------------------------------------------- out of memory, and its estimate


def test_an_out_of_memory_row_names_the_trials_size(tmp_path, make_result):
    from completep_sweep.runner.recorder import Progress, Recorder
    from completep_sweep.store import ResultStore

    result = make_result(lr=2.0**-6)
    config = result.config.replace(batch_size=512, seq_len=256)
    oom = "Task was killed due to the node running low on memory.\nRefer to the documentation."
    trial = SimpleNamespace(
        trial_id="t1",
        config={"trial": config.to_dict()},
        status="ERROR",
        last_result=None,
        get_error=lambda: RuntimeError(oom),
    )
    store = ResultStore(tmp_path / "sweep")
    progress = Progress(total=1, done_before=0, flops_pending=1.0, stream=io.StringIO())
    Recorder(store, progress, None).on_trial_error(0, [trial], trial)
    last = store.load().error.iloc[0].strip().splitlines()[-1]  # what `status` shows
    assert "out of memory at" in last and "batch_size 512" in last and "seq_len 256" in last
    assert f"width {config.width}, depth {config.depth}" in last and "max_concurrent" in last


def test_any_error_row_ends_with_the_trials_size():
    from completep_sweep.memory import with_trial_size
    from completep_sweep.trial import TrialConfig

    config = TrialConfig(width=64, depth=4, batch_size=32, seq_len=128)
    text = with_trial_size("Traceback ...\nValueError: bad thing\n", config)
    assert text.endswith("ValueError: bad thing (width 64, depth 4, batch_size 32, seq_len 128)")
    assert "out of memory" in with_trial_size("torch.OutOfMemoryError: CUDA out of memory.", config)


def test_the_memory_estimate_follows_the_model():
    from completep_sweep.memory import estimate_memory, param_count
    from completep_sweep.train import build_model
    from completep_sweep.trial import TrialConfig

    for fields in ({}, {"bias": False, "width": 128}, {"tie_embeddings": True, "depth": 3}):
        config = TrialConfig(**fields)
        assert param_count(config) == sum(p.numel() for p in build_model(config).parameters())
    base = TrialConfig(width=128, depth=4, batch_size=16, seq_len=128)
    grown = [base.replace(**{k: 2 * getattr(base, k)}) for k in ("width", "depth", "batch_size", "seq_len")]
    assert all(estimate_memory(g) > estimate_memory(base) for g in grown)
    # Within reach of what one such CPU trial measured (about 0.45 GiB of peak RSS).
    assert 0.3 * 2**30 < estimate_memory(base) < 1.0 * 2**30


def test_the_memory_summary_compares_the_largest_trial_with_the_machine(make_spec):
    from completep_sweep.memory import estimate_memory, largest_trial, memory_summary
    from completep_sweep.sweep import load_sweep

    sweep = load_sweep(make_spec("mem", depths=[2, 8]))
    big = largest_trial(sweep)
    assert big.depth == 8 and big.batch_size == 4 and big.seq_len == 32
    each = estimate_memory(big)
    line = memory_summary(sweep, concurrency=2, cpus_per_trial=1)
    assert line.startswith("memory: the largest trial (width 32, depth 8, batch_size 4 x seq_len 32)")
    assert "2 at once (1 CPU each)" in line and "\n" not in line
    crowded = memory_summary(sweep, concurrency=4, cpus_per_trial=1, total=int(2.5 * each))
    assert crowded.startswith("warning: memory:") and "resources.max_concurrent = 2" in crowded
    too_big = memory_summary(sweep, concurrency=1, cpus_per_trial=1, total=each // 2)
    assert too_big.startswith("warning: memory:") and "lower batch_size or seq_len" in too_big
    on_gpu = memory_summary(sweep, concurrency=1, cpus_per_trial=1, gpus_per_trial=1, total=each // 2)
    assert on_gpu.startswith("memory:") and "of GPU memory" in on_gpu  # host memory is not the limit
