"""Ray Jobs: the same ``run`` command, submitted to a cluster with the project as working dir.

The submission id is ``completep-<sweep>-<spec hash>-<attempt>``: submitting the same file twice
finds the existing job instead of starting a second one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cluster import ClusterError, check_address

PROJECT = Path(__file__).resolve().parents[2]  # code, models/ and sweeps/ travel with the job


def dashboard_address(address: str) -> str:
    """``HOST:PORT`` of a dashboard address (http://HOST:8265), checked to answer; ClusterError if not."""
    dashboard = urlsplit(address if "://" in address else f"http://{address}")
    if not dashboard.hostname or not dashboard.port:
        raise ClusterError(f"--address: {address!r} is not a dashboard address like http://HOST:8265")
    hostport = f"{dashboard.hostname}:{dashboard.port}"
    check_address(
        hostport,
        hint="start the cluster with its dashboard (`ray start --head --dashboard-host 0.0.0.0`) or "
        "pass the dashboard's address, e.g. http://HOST:8265 (not the GCS port 6379: jobs go through "
        "the dashboard)",
    )
    return hostport


def use_local_auth_token() -> None:
    """Let the job client send the local Ray auth token, as `ray start` uses it for the cluster.

    Ray 2.5x+ turns token auth on for clusters started where a token exists, and ray.init() follows
    suit, but the job-submission client sends the token only when RAY_AUTH_MODE=token. Ray reads the
    mode once, at import, so this runs before Ray is imported; an explicit RAY_AUTH_MODE is respected.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.isfile(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"


def stage_run(
    *, name: str, text: str, spec_hash: str, attempt: int, results: str, max_concurrent: int | None
) -> tuple[str, str]:
    """Write the sweep file into the project (it travels inside the job's working dir); returns the
    submission id and the job's entrypoint (the same ``run`` command, against the cluster)."""
    staged = PROJECT / ".submit" / f"{name}-{spec_hash}.toml"
    staged.parent.mkdir(exist_ok=True)
    staged.write_text(text)
    entrypoint = (
        f"python -m completep_sweep.cli run {staged.relative_to(PROJECT)} --results {results} --address auto"
    )
    if max_concurrent:
        entrypoint += f" --max-concurrent {max_concurrent}"
    return f"completep-{name}-{spec_hash}-{attempt}", entrypoint


def submit_job(
    *,
    address: str,
    entrypoint: str,
    submission_id: str,
    working_dir: str = str(PROJECT),
    env: dict[str, str] | None = None,
    agent_wait_s: float = 60.0,
) -> tuple[str, str]:
    """Submit ``entrypoint`` as a Ray Job unless ``submission_id`` already exists; returns (id, state)."""
    use_local_auth_token()  # before Ray is imported
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except Exception as e:  # connection refused, auth, bad address: one line with the fix
        raise RuntimeError(
            f"cannot reach the Ray job server at {address}: {str(e).splitlines()[0]}; check --address "
            "(the dashboard address, e.g. http://HOST:8265) and, for token auth, RAY_AUTH_TOKEN"
        ) from None
    # The staged sweep file lives in a git-ignored folder; Ray's upload honours .gitignore unless told
    # not to, so the excludes below are the whole list of what stays behind.
    os.environ["RAY_RUNTIME_ENV_IGNORE_GITIGNORE"] = "1"
    runtime_env: dict[str, Any] = {
        "working_dir": working_dir,
        "excludes": [
            ".venv/",
            "results/",
            ".git/",
            "**/__pycache__/",
            "*.egg-info/",
            ".pytest_cache/",
            "build/",
        ],
        "env_vars": env or {},
    }
    deadline = time.monotonic() + agent_wait_s
    while True:
        status = _job_status(client, submission_id)
        if status is not None and status not in (JobStatus.FAILED, JobStatus.STOPPED):
            return submission_id, f"already submitted ({status.value})"
        if status is not None:
            raise RuntimeError(
                f"job {submission_id} ended {status.value}; resubmit with --attempt N+1 "
                "(finished trials are kept and skipped)"
            )
        try:
            client.submit_job(entrypoint=entrypoint, submission_id=submission_id, runtime_env=runtime_env)
            return submission_id, "submitted"
        except RuntimeError as e:
            # A freshly started head answers before its job agent is up ("try again later").
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray job server at {address} refused the job: {e}") from None
            time.sleep(2)


def wait_for_job(
    address: str, submission_id: str, *, poll_s: float = 2.0, on_change=print
) -> tuple[str, str]:
    """Follow a job until it ends; returns (final state, last lines of its logs)."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    last = None
    while True:
        status = client.get_job_status(submission_id)
        if status != last:
            on_change(f"{submission_id}: {status.value}")
            last = status
        if status.is_terminal():
            return status.value, "\n".join(client.get_job_logs(submission_id).splitlines()[-20:])
        time.sleep(poll_s)


def _job_status(client, submission_id: str):
    try:
        return client.get_job_status(submission_id)
    except Exception:  # unknown id: not submitted yet
        return None
