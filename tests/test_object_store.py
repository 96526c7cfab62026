"""Results on object storage (issue 19, item 2), against a real S3-compatible server on 127.0.0.1.

The server is moto's server mode (``moto[server]``, the dev extra): ``ThreadedMotoServer`` serves the
S3 REST API over HTTP from a thread of the test process, on a free port. The code under test talks to
it through pyarrow's own S3 client (the AWS C++ SDK), as it would to S3: nothing is patched, the
drivers the slow tests start as subprocesses reach it as well, versioning tells how often each object
was written, and it stops with the fixture (or with the test process, never outliving it). MinIO
would need a server binary fetched; an in-process mock (moto's decorators) would not reach pyarrow.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("moto.server", reason="moto[server] (pip install -e '.[dev]') runs the S3 server")

from completep_sweep.results import open_results  # noqa: E402
from completep_sweep.store import LockedError, ResultStore  # noqa: E402
from completep_sweep.store_fs import pull, push  # noqa: E402
from completep_sweep.sweep import load_sweep, parse_sweep  # noqa: E402

KEY_ID = "AKIAOBJECTSTORETEST0"
SECRET = "s3cr3t-Never-Printed-7f3a9c"


@pytest.fixture(scope="module")
def s3_server(free_port):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A fresh versioned bucket; credentials and endpoint in the environment, as a user sets them."""
    import boto3

    for name in ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"sweeps-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return SimpleNamespace(uri=f"s3://{bucket}/prefix", bucket=bucket, client=client, endpoint=s3_server)


def objects(s3, under: str = "") -> dict[str, int]:
    """key -> number of versions written (folder markers, keys ending in '/', left out)."""
    found: dict[str, int] = {}
    pages = s3.client.get_paginator("list_object_versions").paginate(
        Bucket=s3.bucket, Prefix=f"prefix/{under}"
    )
    for page in pages:
        for v in page.get("Versions", []):
            if not v["Key"].endswith("/"):
                found[v["Key"]] = found.get(v["Key"], 0) + 1
    return found


def current(s3, under: str) -> set[str]:
    listing = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=f"prefix/{under}")
    return {o["Key"].rsplit("/", 1)[-1] for o in listing.get("Contents", []) if not o["Key"].endswith("/")}


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and KEY_ID not in text, text[-2000:]


def fake_results(store: ResultStore, text: str, make_result, loss=lambda c: 3.0 + c.lr) -> None:
    """Rows for every trial of a sweep file, as `run` would leave them (no training)."""
    store.write_spec(text)
    for c in parse_sweep(text).trials:
        fields = {k: v for k, v in c.to_dict().items() if k != "lr"}
        store.write_result(make_result(**fields, lr=c.lr, final_val_loss=loss(c)))


# ---------------------------------------------------------------- the store on S3


def test_rows_curves_and_run_records_round_trip_each_object_written_once(s3, make_result):
    store = ResultStore(f"{s3.uri}/s")
    results = [make_result(lr=lr, status=status) for lr, status in ((0.01, "ok"), (0.02, "diverged"))]
    for r in results:
        store.write_result(r)
    store.write_spec("name = 's'\n")
    store.record_run({"started_at": "2026-01-01T00:00:00+00:00", "spec_hash": "x"})
    ids = {r.config.trial_id for r in results}
    assert store.completed_ids() == ids
    rows = store.load()
    assert set(rows.trial_id) == ids and set(rows.status) == {"ok", "diverged"}
    assert rows.set_index("trial_id").loc[results[0].config.trial_id, "lr"] == 0.01
    assert len(store.load_curves()) == 4 and len(store.load_curves(ids=[results[0].config.trial_id])) == 2
    assert store.read_spec() == "name = 's'\n" and store.runs()[0]["spec_hash"] == "x"
    # Each object was written once, in one piece: no temporary or partial object, no multipart left.
    written = objects(s3, "s/")
    assert set(written.values()) == {1} and not [k for k in written if k.rsplit("/", 1)[-1].startswith(".")]
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
    assert {k.split("/", 2)[2] for k in written} >= {f"trials/{i}.parquet" for i in ids} | {"spec.toml"}
    # The live view: written whole; a dead driver's (this host, a pid that is gone) is not believed.
    store.write_live({"t": {"step": 1}})
    assert store.read_live() == {"t": {"step": 1}}
    live = json.loads(store.live_path.read_text())
    store.live_path.write_bytes(json.dumps({**live, "pid": 2**22 + 1}).encode())
    assert store.read_live() == {}
    assert ResultStore(f"{s3.uri}/s", read_only=True).root == store.root  # one cache folder per URI


def test_a_damaged_object_is_skipped_by_readers_and_quarantined_by_run(s3, make_result, cli, stale_grid):
    store = ResultStore(f"{s3.uri}/stale")
    fake_results(store, stale_grid, make_result)
    bad = sorted(store.completed_ids())[0]
    s3.client.put_object(Bucket=s3.bucket, Key=f"prefix/stale/trials/{bad}.parquet", Body=b"PAR1 not parquet")
    reader = ResultStore(f"{s3.uri}/stale", read_only=True)
    assert bad not in set(reader.load().trial_id) and len(reader.load()) == 11
    code, out, err = cli("status", "stale", "--results", s3.uri)
    assert code == 0 and "11 ok" in out and f"{bad}.parquet is skipped" in err
    assert f"{bad}.parquet" in current(s3, "stale/trials/")  # readers move nothing
    assert bad not in store.completed_ids()  # what `run` calls first: set aside, so it runs again
    assert f"{bad}.parquet" not in current(s3, "stale/trials/")
    assert f"{bad}.parquet" not in current(s3, "stale/curves/")  # its curve goes with it
    assert {k.split(".")[0] for k in current(s3, "stale/quarantine/")} == {bad}
    assert open_results(reader).pending[0].trial_id == bad
    no_secret(out, err)


def test_stale_rows_status_and_report_answer_as_on_a_local_disk(s3, make_result, cli, tmp_path, stale_grid):
    """The same rows (an earlier version of the sweep among them) locally and on S3: the same answer."""
    earlier = stale_grid.replace("steps = 40", "steps = 40\neval_batches = 4")
    local = ResultStore(tmp_path / "stale")
    remote = ResultStore(f"{s3.uri}/stale")
    for store in (local, remote):
        fake_results(store, earlier, make_result, loss=lambda c: 9.0)
        fake_results(store, stale_grid, make_result)
    answers = []
    for target, results in ((local.root, tmp_path), ("stale", s3.uri)):
        code, status, err = cli("status", target, "--results", results)
        assert code == 0 and "12 ok, 0 diverged, 0 error of the 12 trials" in status and "12 stale" in status
        code, report, err2 = cli("report", target, "--results", results, "--json", "--no-mlflow")
        assert code == 0, err2
        no_secret(status, err, report, err2)
        answers.append((status.split(": ", 1)[1], json.loads(report)))
    assert answers[0] == answers[1]
    assert "verdict.json" in current(s3, "stale/report/")  # the report folder, uploaded
    code, out, _ = cli("report", f"{s3.uri}/stale", "--no-mlflow")
    assert code == 0 and f"report: {s3.uri}/stale/report (" in out and f"{s3.uri}/stale/report/" in out


def test_the_study_copy_goes_up_and_down_and_a_stale_one_is_dropped(s3, tmp_path, monkeypatch):
    store = ResultStore(f"{s3.uri}/tune")
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / "optuna.db").write_bytes(b"SQLite format 3\0 study")
    assert push(store, "optuna.db") and "optuna.db" in current(s3, "tune/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-machine"))
    elsewhere = ResultStore(f"{s3.uri}/tune")
    assert elsewhere.root != store.root
    pull(elsewhere, "optuna.db")
    assert (elsewhere.root / "optuna.db").read_bytes() == b"SQLite format 3\0 study"
    (store.folder / "optuna.db").unlink()
    pull(elsewhere, "optuna.db")  # the folder has none now: no cached copy may stand in for it
    assert not (elsewhere.root / "optuna.db").exists()


def test_a_decided_searchs_looks_go_to_s3_once_and_read_back_on_another_machine(s3, tmp_path, monkeypatch):
    from completep_sweep.search.looks import looks_of

    reads, said = [("a1", 2.5), ("b2", math.inf)], {"transfer": "keep", "payoff": "flat"}
    looks = looks_of(ResultStore(f"{s3.uri}/dec").folder, read_only=False)
    assert looks.say("lr", reads, lambda: said, ("mup", 32)) == said
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-machine"))
    elsewhere = looks_of(ResultStore(f"{s3.uri}/dec").folder, read_only=True)
    assert (
        elsewhere.say("lr", reads[::-1], lambda: pytest.fail("asked the analysis again"), ("mup", 32)) == said
    )
    assert list(objects(s3, "dec/looks/").values()) == [1]  # one object, written once


# ---------------------------------------------------------------- one driver per URI


def test_a_live_lock_refuses_a_second_driver_and_a_dead_ones_is_taken_over(s3, make_spec, cli):
    spec = make_spec("locked")
    store = ResultStore(f"{s3.uri}/locked")
    with store.lock("completep-sweep run first"):
        code, _, err = cli("run", spec, "--results", s3.uri, "--no-mlflow")
        assert code == 2 and "is in use by a running driver" in err and "completep-sweep run first" in err
        with pytest.raises(LockedError):
            with ResultStore(f"{s3.uri}/locked").lock("third"):
                pass
    assert ".driver.lock" not in current(s3, "locked/")  # released: the lock object is gone
    lock = store.folder / ".driver.lock"
    record = {"id": "x", "pid": 2**22 + 1, "host": socket.gethostname(), "updated": time.time()}
    for dead in (record, {**record, "host": "elsewhere", "updated": time.time() - 600}):
        lock.write_bytes(json.dumps(dead).encode())  # killed here, or silent elsewhere for 10 minutes
        with store.lock("takes over"):
            assert json.loads(lock.read_bytes())["command"] == "takes over"
    lock.write_bytes(json.dumps({**record, "host": "elsewhere"}).encode())  # alive elsewhere
    with pytest.raises(LockedError, match="on elsewhere"):
        with store.lock("refused"):
            pass


# ---------------------------------------------------------------- bad input, and no credential printed


def test_bad_uris_exit_2_up_front_without_printing_a_credential(s3, make_spec, cli, monkeypatch, free_port):
    spec = make_spec("bad")
    cases = [
        (f"s3://{KEY_ID}:{SECRET}@{s3.bucket}/prefix", "credentials in the URI are refused"),
        (f"s3://{s3.bucket}/prefix?endpoint_override=x", "options in the URI are not read"),
        ("s3://no-such-bucket-here/prefix", "no such bucket"),
    ]
    for uri, says in cases:
        for argv in (
            ("run", spec),
            ("validate", spec),
            ("status", "bad"),
            ("report", "bad"),
            ("export", "bad"),
        ):
            code, out, err = cli(*argv, "--results", uri, *(["--no-mlflow"] if argv[0] == "run" else []))
            assert code == 2 and "--results:" in err and says in err, (argv, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
            no_secret(out, err)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    t0 = time.monotonic()
    code, out, err = cli("run", spec, "--results", s3.uri, "--no-mlflow")
    assert code == 2 and "--results: cannot reach" in err and "AWS_ENDPOINT_URL" in err
    assert time.monotonic() - t0 < 30
    no_secret(out, err)


# ---------------------------------------------------------------- end to end (Ray)


@pytest.mark.slow
def test_a_driver_killed_mid_run_resumes_on_s3_writing_every_trial_once(
    s3, make_spec, tmp_path, start_driver
):
    spec = make_spec("s3kill", steps=60)  # 8 trials, two at a time
    ids = load_sweep(spec).ids
    driver = start_driver(spec, s3.uri, tmp_path / "first.log")
    driver.wait_until(lambda: len(current(s3, "s3kill/trials/")) >= 2, "two rows on S3")
    driver.kill_all()  # SIGKILL to the driver's whole session: the driver, Ray and its workers
    driver.proc.wait(30)
    before = current(s3, "s3kill/trials/")
    assert 2 <= len(before) < len(ids)
    resumed = start_driver(spec, s3.uri, tmp_path / "second.log")
    assert resumed.proc.wait(600) == 0, resumed.output()[-3000:]
    out = resumed.output()
    assert f"{len(ids) - len(before)} ran" in out and f"{len(before)} already done" in out
    written = objects(s3, "s3kill/")
    rows = {k.rsplit("/", 1)[-1] for k in written if "/trials/" in k}
    assert rows == {f"{i}.parquet" for i in ids}
    assert all(written[f"prefix/s3kill/trials/{r}"] == 1 for r in rows)  # no row written twice
    # A curve is written just before its row: one whose row the kill prevented is written again.
    assert all(written[f"prefix/s3kill/curves/{r}"] == 1 for r in before)
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")
    assert not current(s3, "s3kill/quarantine/") and "live.json" not in current(s3, "s3kill/")
    assert len(ResultStore(f"{s3.uri}/s3kill").load()) == len(ids)
    no_secret(driver.output(), out)


@pytest.mark.slow
def test_the_same_sweep_on_local_disk_and_on_s3_gives_the_same_answer(s3, make_spec, tmp_path, cli):
    import ray

    spec = make_spec("same", steps=40)
    local = tmp_path / "results"
    texts = []
    for results in (local, s3.uri):
        try:
            code, out, err = cli("run", spec, "--results", results, "--no-mlflow")
        finally:
            ray.shutdown()
        assert code == 0, err
        texts += [out, err]
    answers, exports = [], []
    for target in (local / "same", f"{s3.uri}/same"):
        code, out, err = cli("report", target, "--json", "--no-mlflow")
        assert code == 0, err
        answers.append(json.loads(out))
        code, csv, err2 = cli("export", target, "--target-depth", 16, "--format", "csv")
        assert code == 0, err2
        exports.append(csv)
        texts += [out, err, csv, err2]
    assert answers[0]["optima"] == answers[1]["optima"]
    assert answers[0]["recommendations"] == answers[1]["recommendations"]
    assert exports[0] == exports[1] and exports[0].count("\n") >= 2
    code, out, err = cli(
        "sync", "same", "--results", s3.uri, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"
    )
    created = re.search(r"(\d+) runs created", out)
    assert code == 0 and created and int(created.group(1)) >= 8, out + err
    texts += [out, err]
    no_secret(*texts)
    assert Path(tmp_path / "m.db").is_file()


@pytest.mark.slow
def test_an_optuna_study_on_s3_resumes_on_another_machine_after_a_kill(
    s3, tmp_path, start_driver, cli, monkeypatch
):
    """The study is a local SQLite copy: a killed driver never uploaded it, so the resumed run (with
    another, empty cache) rebuilds it from the rows on S3: n_trials in all, none run twice."""
    import ray

    spec = tmp_path / "tune.toml"
    spec.write_text(
        'name = "tune"\nmodel = "tiny"\nparameterizations = ["completep"]\n[grid]\nwidth = [32]\n'
        "depth = [2]\nlr = { log2_range = [-10, -3] }\n[model_overrides]\nseq_len = 32\n"
        "[train]\nsteps = 40\nbatch_size = 4\neval_interval = 20\neval_batches = 1\n"
        '[search]\nmethod = "optuna"\nn_trials = 6\n'
    )
    driver = start_driver(spec, s3.uri, tmp_path / "first.log")
    driver.wait_until(lambda: len(current(s3, "tune/trials/")) >= 2, "two rows on S3")
    driver.kill_all()
    driver.proc.wait(30)
    before = current(s3, "tune/trials/")
    assert 2 <= len(before) < 6
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another-machine"))
    try:
        code, out, err = cli("run", spec, "--results", s3.uri, "--no-mlflow")
    finally:
        ray.shutdown()
    assert code == 0, err
    written = objects(s3, "tune/")
    rows = [k for k in written if "/trials/" in k]
    assert len(rows) == 6 and all(written[k] == 1 for k in rows), out + err
    assert "prefix/tune/optuna.db" in written  # the study, uploaded when the run ended
    code, status, err2 = cli("status", "tune", "--results", s3.uri)
    assert code == 0 and "6 ok, 0 diverged, 0 error of the 6 trials" in status and "0 pending" in status
    no_secret(driver.output(), out, err, status, err2)
