"""``completep-sweep ui``: the MLflow UI server on the project's store, bound to 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import TrackingError, connect, default_tracking_uri


def serve_ui(
    results_root: Path, *, port: int = 5000, host: str = "127.0.0.1", tracking_uri: str | None = None
) -> subprocess.Popen:
    """Start ``mlflow server`` (one worker) on the project store; the caller stops its process group."""
    uri = tracking_uri or default_tracking_uri(results_root)
    if uri.startswith(("http:", "https:", "databricks")):
        raise TrackingError(
            f"tracking URI {uri} is already a server: open it in a browser instead of starting a UI"
        )
    Path(results_root).mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--artifacts-destination",
        str(Path(results_root).resolve() / "mlartifacts"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts",
        "--log-level warning",
    ]  # errors only, not a line per request
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(cmd, env=env, start_new_session=True)  # own group: stop it with all children


def ui_url(
    results_root: Path,
    sweep: str | None = None,
    *,
    port: int = 5000,
    host: str = "127.0.0.1",
    tracking_uri: str | None = None,
) -> str:
    """The UI address: the sweep's runs in the "Transfer curves" chart view when it was synced with
    its curves (see curves.py), else its runs table; the UI's front page without a sweep."""
    from .curves import VIEW_KEY, url

    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    if sweep is None:
        return base
    client = connect(tracking_uri or default_tracking_uri(results_root), Path(results_root))
    experiment = client.get_experiment_by_name(sweep)
    if experiment is None:
        return base
    saved = f"mlflow.sharedViewState.{VIEW_KEY}" in experiment.tags
    return url(base, experiment.experiment_id, with_view=saved)


def wait_for_ui(proc: subprocess.Popen, url: str, timeout: float = 60) -> None:
    """Block until the server at base ``url`` (``http://host:port/``) answers; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrackingError(
                f"mlflow server for {url} exited with status {proc.returncode} (port in use?)"
            )
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TrackingError(f"mlflow server at {url} did not answer within {timeout:g} s")


def stop_ui(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop the server and its workers (the whole process group it leads)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _latest_sweep(results_root: Path) -> str | None:
    """The sweep whose results changed last (what a user most likely wants to look at)."""
    folders = [p for p in results_root.glob("*/spec.toml")] if results_root.is_dir() else []
    return max(folders, key=lambda p: p.stat().st_mtime).parent.name if folders else None


def run_ui(
    results_root: Path,
    *,
    port: int = 5000,
    host: str = "127.0.0.1",
    tracking_uri: str | None = None,
    sweep: str | None = None,
) -> int:
    """Blocking ``completep-sweep ui``: serve until Ctrl-C (exit 0), printing the sweep's URL once it
    answers. Any way out, SIGTERM included (the CLI raises it as ``Interrupted``), stops the server:
    it runs in its own session, so nothing else would."""
    from ..interrupt import Interrupted

    proc = serve_ui(results_root, port=port, host=host, tracking_uri=tracking_uri)
    try:
        wait_for_ui(proc, ui_url(results_root, port=port, host=host))
        if sweep is None:
            sweep = _latest_sweep(Path(results_root))
        print(ui_url(results_root, sweep, port=port, host=host, tracking_uri=tracking_uri), flush=True)
        return proc.wait()
    except (KeyboardInterrupt, Interrupted) as e:
        if isinstance(e, Interrupted) and e.name != "SIGINT":
            raise
        return 0
    finally:
        stop_ui(proc)
