"""Trials larger than one device: ``[resources] workers_per_trial`` (a Ray Train data-parallel job
per trial) and ``micro_batch_size`` (gradient accumulation).

The Ray tests (slow) share one local Ray of this machine's CPUs; each trial of theirs runs on 2
workers of 1 CPU with the gloo backend.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from completep_sweep.data import load_source
from completep_sweep.interrupt import descendants
from completep_sweep.train import train_trial
from completep_sweep.trial import ConfigError

TOLERANCE = 1e-5
MEASURED = {}  # the numbers behind the assertions, printed at the end of the module


def largest_gap(a: list[dict], b: list[dict]) -> float:
    assert [p["step"] for p in a] == [p["step"] for p in b]
    return max(abs(p[k] - q[k]) for p, q in zip(a, b) for k in ("train_loss", "val_loss"))


@pytest.fixture(scope="module", autouse=True)
def _report_measured():
    yield
    if MEASURED:
        print("\nmultiworker:", ", ".join(f"{k} {v:.3g}" for k, v in MEASURED.items()))


# ---------------------------------------------------------------- without Ray


def test_rank_slices_make_up_the_global_batch():
    source = load_source("shakespeare", 256, 32)
    for split, seed in (("train", 3), ("val", 0)):
        x, y = source.batch(split, 7, batch_size=8, seq_len=32, seed=seed)
        parts = [
            source.batch(split, 7, batch_size=8, seq_len=32, seed=seed, rank=r, ranks=4) for r in range(4)
        ]
        assert all(p[0].shape == (2, 32) for p in parts)
        assert torch.equal(torch.cat([p[0] for p in parts]), x) and torch.equal(
            torch.cat([p[1] for p in parts]), y
        )


def test_micro_batches_make_the_updates_of_the_whole_batch(tiny_trial):
    whole = train_trial(tiny_trial(steps=20, eval_interval=5))
    micro = train_trial(tiny_trial(steps=20, eval_interval=5, micro_batch_size=2))  # 4 per step
    gap = largest_gap([vars(p) for p in whole.curve], [vars(p) for p in micro.curve])
    MEASURED["micro-batch gap"] = gap
    assert gap < TOLERANCE and abs(whole.final_val_loss - micro.final_val_loss) < TOLERANCE
    assert micro.flops == whole.flops and micro.steps_done == whole.steps_done == 20


def test_micro_batch_size_is_an_added_field_that_must_divide_the_batch(tiny_trial):
    plain = tiny_trial(steps=20, eval_interval=5).trial_id
    assert tiny_trial(steps=20, eval_interval=5, micro_batch_size=0).trial_id == plain  # old ids stay
    assert tiny_trial(steps=20, eval_interval=5, micro_batch_size=2).trial_id != plain
    with pytest.raises(ConfigError, match="micro_batch_size 3 does not divide batch_size 8") as e:
        tiny_trial(steps=20, eval_interval=5, micro_batch_size=3)
    assert e.value.field == "micro_batch_size"


def test_validate_and_run_refuse_what_the_workers_cannot_do(make_spec, cli, tmp_path):
    results = tmp_path / "results"
    spec = make_spec("uneven", resources="workers_per_trial = 3")  # batch_size 4
    code, out, err = cli("validate", spec, "--results", results)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and "resources.workers_per_trial = 3 does not divide batch_size 4" in err

    spec = make_spec("micro", resources="workers_per_trial = 2", extra_train="micro_batch_size = 4")
    spec.write_text(spec.read_text().replace("\nbatch_size = 4", "\nbatch_size = 8"))  # 4 per worker: fine
    assert cli("validate", spec, "--results", results)[0] == 0
    spec.write_text(spec.read_text().replace("\nbatch_size = 8", "\nbatch_size = 12"))  # 6 per worker
    code, _, err = cli("validate", spec, "--results", results)
    assert code == 2 and "train.micro_batch_size = 4 does not divide the 6 sequences" in err

    spec = make_spec("halves", resources="workers_per_trial = 2\ngpus_per_trial = 0.5")
    code, _, err = cli("validate", spec, "--results", results)
    assert code == 2 and "set gpus_per_trial = 1" in err

    # Valid for a cluster, so validate notes it; run here refuses it before Ray starts.
    cores = os.cpu_count() or 1
    spec = make_spec("toobig", resources="workers_per_trial = 2")
    spec.write_text(spec.read_text().replace("cpus_per_trial = 1", f"cpus_per_trial = {cores}"))
    code, out, _ = cli("validate", spec, "--results", results)
    assert code == 0 and "note: `run` here would refuse it: resources.workers_per_trial = 2" in out
    code, _, err = cli("run", spec, "--results", results, "--no-mlflow")
    assert code == 2 and err.count("\n") == 1, err
    assert f"resources.workers_per_trial = 2: 2 workers x {cores} CPU" in err
    assert "set workers_per_trial <= 1" in err


# ---------------------------------------------------------------- on Ray (slow)


@pytest.fixture(scope="module")
def local_ray():
    """The Ray a `run` here starts (connect: this machine's CPUs, no dashboard), for the module."""
    import ray

    from completep_sweep.runner.cluster import connect

    ray.shutdown()
    connect(None)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_two_workers_make_the_updates_of_one(local_ray, tmp_path, tiny_trial):
    from ray.train import UserCallback

    from completep_sweep.runner.data_parallel import build_trainer

    class KeepRow(UserCallback):  # runs in Train's controller: hands rank 0's row over in a file
        def after_report(self, run_context, metrics, checkpoint):
            if "row" in metrics[0]:
                (tmp_path / "row.json").write_text(json.dumps(metrics[0]))

    config = tiny_trial(steps=20, eval_interval=5)
    one = train_trial(config)
    t0 = time.monotonic()
    build_trainer(
        config.to_dict(),
        workers=2,
        cpus=1,
        gpus=0,
        storage=str(tmp_path),
        ledger=str(tmp_path / "placement"),
        callbacks=[KeepRow()],
    ).fit()
    MEASURED["2-worker Train job s"] = time.monotonic() - t0
    reported = json.loads((tmp_path / "row.json").read_text())
    row, curve = reported["row"], reported["curve"]
    gap = largest_gap([vars(p) for p in one.curve], curve)
    MEASURED["2-vs-1 worker gap"] = gap
    assert gap < TOLERANCE
    assert abs(row["final_val_loss"] - one.final_val_loss) < TOLERANCE
    assert abs(row["final_train_loss"] - one.final_train_loss) < TOLERANCE
    assert row["trial_id"] == config.trial_id and row["steps_done"] == 20 and row["flops"] == one.flops
    assert row["worker"]  # the node of rank 0


def sweep_of_two_worker_trials(make_spec, name: str, *, lrs, steps: int, eval_interval: int) -> Path:
    spec = make_spec(name, parameterizations=["completep"], depths=[2], lrs=lrs, steps=steps)
    text = spec.read_text().replace(
        f"eval_interval = {max(1, steps // 2)}", f"eval_interval = {eval_interval}"
    )
    spec.write_text(text.replace("cpus_per_trial = 1", "cpus_per_trial = 1\nworkers_per_trial = 2"))
    return spec


@pytest.mark.slow
def test_a_sweep_of_two_worker_trials_writes_each_row_once(local_ray, make_spec, tmp_path, cli):
    from completep_sweep.store import ResultStore
    from completep_sweep.sweep import load_sweep

    results = tmp_path / "results"
    # Half a CPU per worker: both trials' jobs run at once (the driver derives 2 trials at once).
    spec = sweep_of_two_worker_trials(make_spec, "dp", lrs=[2**-7, 2**-6], steps=20, eval_interval=10)
    spec.write_text(spec.read_text().replace("cpus_per_trial = 1", "cpus_per_trial = 0.5"))
    t0 = time.monotonic()
    code, out, err = cli("run", spec, "--results", results, "--no-mlflow")
    MEASURED["2-trial sweep s"] = time.monotonic() - t0
    assert code == 0, err[-3000:]
    sweep = load_sweep(spec)
    store = ResultStore(results / "dp")
    rows = store.load()
    assert len(rows) == 2 and set(rows.trial_id) == sweep.ids and set(rows.status) == {"ok"}
    assert len(list(store.trials_dir.glob("*.parquet"))) == 2
    curves = store.load_curves()
    assert len(curves) == 4 and not curves.duplicated(["trial_id", "step"]).any()
    # The same trial on one process: the same id (workers are not part of it), the same losses.
    config = next(c for c in sweep.trials if c.trial_id == rows.trial_id.iloc[0])
    one = train_trial(config)
    assert abs(rows.final_val_loss.iloc[0] - one.final_val_loss) < TOLERANCE
    code, out, _ = cli("run", spec, "--results", results, "--no-mlflow")  # resume: nothing to do
    assert code == 0 and "0 ran" in out


def _our(title: bytes) -> list[int]:
    """Processes of this test's Ray whose title starts with ``title`` (another Ray is not ours)."""
    found = []
    for pid in descendants():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("victim", [b"ray::RayTrainWorker", b"ray::ImplicitFunc"], ids=["worker", "trial"])
def test_a_killed_worker_or_trial_process_retries_the_trial(local_ray, make_spec, tmp_path, cli, victim):
    """SIGKILL one Train worker, or the Tune trial's own process (its controller and workers die
    with it, their placement group stays behind until the ledger frees it): the trial runs again."""
    from completep_sweep.store import ResultStore

    results = tmp_path / "results"
    spec = sweep_of_two_worker_trials(make_spec, "dpkill", lrs=[2**-7], steps=150, eval_interval=50)
    store = ResultStore(results / "dpkill")
    killed, before, after = [], set(), set()
    ended = threading.Event()  # the run returned: no clock, so a loaded machine only makes it slower

    def kill_mid_trial():
        while not ended.is_set() and not killed:
            live = store.read_live()  # the driver's view: steps reported by the trial in flight
            targets = _our(victim)
            if targets and any(t.get("step", 0) > 0 for t in live.values()):
                before.update(_our(b"ray::RayTrainWorker"))
                os.kill(targets[-1], signal.SIGKILL)
                killed.append(targets[-1])
            time.sleep(0.1)
        while not ended.is_set() and not any(store.trials_dir.glob("*.parquet")):
            after.update(set(_our(b"ray::RayTrainWorker")) - before)
            time.sleep(0.2)

    killer = threading.Thread(target=kill_mid_trial, daemon=True)
    t0 = time.monotonic()
    killer.start()
    code, _, err = cli("run", spec, "--results", results, "--no-mlflow")
    MEASURED[f"killed {victim.decode()[5:]}, trial retried s"] = time.monotonic() - t0
    ended.set()
    killer.join(5)
    assert code == 0, err[-3000:]
    assert killed, "the kill must land while the trial runs"
    assert after, "the trial ran again on new workers"
    rows = store.load()
    assert len(rows) == 1 and rows.status.iloc[0] == "ok" and rows.steps_done.iloc[0] == 150
    assert not store.errors_dir.exists() or not any(store.errors_dir.iterdir())
