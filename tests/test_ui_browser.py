"""The MLflow UI really shows a synced sweep: a server on 127.0.0.1 and headless Chromium."""

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from completep_sweep import tracking
from completep_sweep.tracking import ui
from completep_sweep.store import ResultStore

# The screenshot goes to the test's tmp dir; set COMPLETEP_UI_SCREENSHOT=path to keep a copy.
KEEP_SCREENSHOT = os.environ.get("COMPLETEP_UI_SCREENSHOT")
# Chromium isolated from the network and from any profile; the SPA needs virtual time to render.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Sorted by run name, MLflow lists every run flat; its default (by date) folds the children under the parent.
BY_NAME = "?orderByKey=" + quote("tags.`mlflow.runName`") + "&orderByAsc=true"


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def write_sweep(root: Path, make_result) -> list[str]:
    store = ResultStore(root / "ui-demo")
    store.write_spec('name = "ui-demo"\nparameterizations = ["mup", "completep"]\n[grid]\nlr = [0.00390625, 0.0078125, 0.015625]\n')
    for p in ("mup", "completep"):
        for e in (-8, -7, -6):
            store.write_result(make_result(sweep="ui-demo", parameterization=p, lr=2.0**e, depth=4, steps=200,
                                           curve_steps=(50, 100, 150, 200), code_version="ui-test"))
    return [f"{p} d4 w64 lr=2^{e} s0" for p in ("mup", "completep") for e in (-8, -7, -6)]


def browse(browser: str, url: str, profile: Path, *extra: str) -> str:
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000", *extra, url]
    # timeout bounds a hung browser; it is not a performance assertion
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout


@pytest.mark.slow
def test_mlflow_ui_lists_the_sweeps_runs(tmp_path, free_port, make_result):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not found (install it with `apt-get install chromium`; .ci/run does)")
    root = tmp_path / "results"
    names = write_sweep(root, make_result)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking.sync(root / "ui-demo", uri)
    port = free_port()
    proc = ui.serve_ui(root, port=port, tracking_uri=uri)
    try:
        ui.wait_for_ui(proc, ui.ui_url(root, port=port), timeout=120)
        url = ui.ui_url(root, "ui-demo", port=port, tracking_uri=uri)
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and url.endswith("/runs")
        dom = browse(browser, url + BY_NAME, tmp_path / "profile-dom", "--dump-dom")
        assert "ui-demo (sweep)" in dom
        for name in names:
            assert name in dom, f"run {name!r} missing from the rendered runs table"
        screenshot = tmp_path / "mlflow-ui.png"
        browse(browser, url + BY_NAME, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1400,900")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if KEEP_SCREENSHOT:
            shutil.copyfile(screenshot, KEEP_SCREENSHOT)
    finally:
        ui.stop_ui(proc)
    assert proc.poll() is not None
