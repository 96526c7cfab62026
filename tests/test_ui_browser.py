"""The MLflow UI really shows a synced sweep: a server on 127.0.0.1 and headless Chromium."""

import math
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from completep_sweep import tracking
from completep_sweep.store import ResultStore
from completep_sweep.tracking import ui

# The screenshot goes to the test's tmp dir; set COMPLETEP_UI_SCREENSHOT=path to keep a copy.
KEEP_SCREENSHOT = os.environ.get("COMPLETEP_UI_SCREENSHOT")
# Chromium isolated from the network and from any profile; the SPA needs virtual time to render.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Sorted by run name, MLflow lists every run flat; its default (by date) folds the children under the parent.
BY_NAME = "?orderByKey=" + quote("tags.`mlflow.runName`") + "&orderByAsc=true"


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def write_sweep(root: Path, make_result) -> list[str]:
    store = ResultStore(root / "ui-demo")
    store.write_spec(
        'name = "ui-demo"\nparameterizations = ["mup", "completep"]\n'
        "[grid]\nlr = [0.00390625, 0.0078125, 0.015625]\n"
    )
    for p in ("mup", "completep"):
        for e in (-8, -7, -6):
            store.write_result(
                make_result(
                    sweep="ui-demo",
                    parameterization=p,
                    lr=2.0**e,
                    depth=4,
                    steps=200,
                    curve_steps=(50, 100, 150, 200),
                    code_version="ui-test",
                )
            )
    return [f"{p} d4 w64 lr=2^{e} s0" for p in ("mup", "completep") for e in (-8, -7, -6)]


@contextmanager
def serving(root: Path, sweep: str, port: int):
    """Sync ``sweep`` into a SQLite store, serve the UI on ``port``; yield the URL `ui` prints."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking.sync(root / sweep, uri)
    proc = ui.serve_ui(root, port=port, tracking_uri=uri)
    try:
        ui.wait_for_ui(proc, ui.ui_url(root, port=port), timeout=120)
        yield ui.ui_url(root, sweep, port=port, tracking_uri=uri)
    finally:
        ui.stop_ui(proc)
    assert proc.poll() is not None


def browse(browser: str, url: str, profile: Path, *extra: str, budget_ms: int = 15000) -> str:
    """Chromium's output for ``url`` after ``budget_ms`` of virtual time (the SPA's fetches and
    renders run inside it; the chart view needs more than the runs table)."""
    cmd = [
        browser,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        *extra,
        url,
    ]
    # timeout bounds a hung browser; it is not a performance assertion
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout


@pytest.mark.slow
def test_mlflow_ui_lists_the_sweeps_runs(tmp_path, free_port, make_result):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not found (install it with `apt-get install chromium`; .ci/run does)")
    root = tmp_path / "results"
    names = write_sweep(root, make_result)
    port = free_port()
    with serving(root, "ui-demo", port) as url:
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and "/runs?" in url
        url += "&" + BY_NAME[1:]
        dom = browse(browser, url, tmp_path / "profile-dom", "--dump-dom")
        assert "ui-demo (sweep)" in dom
        for name in names:
            assert name in dom, f"run {name!r} missing from the rendered runs table"
        screenshot = tmp_path / "mlflow-ui.png"
        browse(
            browser, url, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1400,900"
        )
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if KEEP_SCREENSHOT:
            shutil.copyfile(screenshot, KEEP_SCREENSHOT)


CURVE_DEPTHS, CURVE_LRS = (2, 8, 32), tuple(range(-10, -3))
# The darkest shade of each parameterization's palette (tracking/curves.py): the deepest line's colour.
DEEPEST = {"mup": (0x7F, 0x27, 0x04), "completep": (0x00, 0x44, 0x1B)}


def write_curve_sweep(root: Path, make_result) -> None:
    """Two parameterizations x 3 depths x 7 lrs: loss = 2.5 + 0.05 (log2 lr - optimum)^2, optimum
    moving with depth for µP only, so the lines differ visibly."""
    store = ResultStore(root / "curves-demo")
    store.write_spec(
        'name = "curves-demo"\nparameterizations = ["mup", "completep"]\n[grid]\n'
        f"depth = {list(CURVE_DEPTHS)}\nlr = {{ log2_range = [{CURVE_LRS[0]}, {CURVE_LRS[-1]}] }}\n"
    )
    for p in ("mup", "completep"):
        for depth in CURVE_DEPTHS:
            optimum = -7 - (math.log2(depth) - 1) * (0.5 if p == "mup" else 0.0)
            for e in CURVE_LRS:
                diverged = p == "mup" and depth == CURVE_DEPTHS[-1] and e == CURVE_LRS[-1]
                store.write_result(
                    make_result(
                        sweep="curves-demo",
                        parameterization=p,
                        depth=depth,
                        lr=2.0**e,
                        status="diverged" if diverged else "ok",
                        final_val_loss=math.nan if diverged else 2.5 + 0.05 * (e - optimum) ** 2,
                    )
                )


def colour_pixels(png: Path, rgb: tuple[int, int, int], tol: int = 12) -> int:
    import matplotlib.image

    image = (matplotlib.image.imread(png)[..., :3] * 255).round()
    return int((abs(image - rgb) <= tol).all(axis=-1).sum())


@pytest.mark.slow
def test_ui_url_alone_opens_the_transfer_curves_as_lines(tmp_path, free_port, make_result):
    """What `completep-sweep ui` prints is all a user needs: the page it opens draws one loss-vs-log2(lr)
    line per (parameterization, depth), coloured by depth, with no click."""
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not found (install it with `apt-get install chromium`; .ci/run does)")
    root = tmp_path / "results"
    write_curve_sweep(root, make_result)
    with serving(root, "curves-demo", free_port()) as url:  # exactly what `ui` prints
        assert "viewStateShareKey=transfer-curves" in url and "compareRunsMode=CHART" in url
        dom = browse(
            browser, url, tmp_path / "profile-dom", "--dump-dom", "--window-size=1400,2000", budget_ms=60000
        )
        for title in (  # one chart per parameterization (titled by its metric), then the optima's
            "µP: final_val_loss vs log2 lr",
            "CompleteP: final_val_loss vs log2 lr",
            "optimal log2 lr vs log2 depth",
        ):
            assert title in dom, f"chart {title!r} missing from the page"
        assert "log2 lr" in dom and "log2 depth" in dom  # the x axes
        assert "µP: diverged at log2 lr" in dom  # the diverged point, marked
        traces = re.findall(r'class="trace scatter', dom)
        assert len(traces) >= len(CURVE_DEPTHS) * 2, f"{len(traces)} plotted lines, want one per curve"
        for name in ("µP", "CompleteP"):
            for depth in CURVE_DEPTHS:  # plain run names
                assert f"{name} depth {depth} width 64" in dom, f"curve run {name} depth {depth} missing"
            assert f"{name} optimum of lr" in dom
        screenshot = tmp_path / "mlflow-curves.png"
        browse(
            browser,
            url,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1400,1500",
            budget_ms=60000,
        )
        if KEEP_SCREENSHOT:
            shutil.copyfile(screenshot, KEEP_SCREENSHOT)
        for p, rgb in DEEPEST.items():  # lines, not just a legend swatch: many pixels of the colour
            assert colour_pixels(screenshot, rgb) > 300, f"no {p} line drawn in the screenshot"
