"""The README, followed as a new user would, in a headless terminal (tmux, 100 columns).

A copy of the working tree stands in for a fresh clone. In it, the README's commands in order:
`make setup` (a new .venv of its own), `source .venv/bin/activate`, the quickstart's `run` and
`report`, `export ... --format toml > pasted.toml`, `validate pasted.toml`, and the block's own
`completep-sweep trial` line, which must train with the tuned settings.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = 100


def fresh_copy(dest: Path) -> Path:
    """The files a clone would have (tracked, and new ones not ignored), without .venv or results."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


class Terminal:
    """A bash in a detached tmux session on a socket of its own; commands typed, output read back."""

    def __init__(self, cwd: Path, env: dict):
        self.socket = f"walk-{uuid.uuid4().hex[:8]}"
        self.log = cwd / ".terminal.log"
        self._tmux(
            "new-session", "-d", "-x", str(COLUMNS), "-y", "50", "-c", str(cwd), "bash --norc", env=env
        )
        self._tmux("pipe-pane", "-o", f"cat >> {self.log}")

    def _tmux(self, *args, env=None):
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, env=env, capture_output=True)

    def type(self, command: str, timeout: float) -> str:
        """Type ``command`` and Enter; wait for its exit status; return (status, what it printed)."""
        mark = uuid.uuid4().hex[:8]
        start = self.log.stat().st_size if self.log.exists() else 0
        self._tmux("send-keys", "-l", f"{command}; echo __END_{mark}_$?__")
        self._tmux("send-keys", "Enter")
        deadline = time.monotonic() + timeout  # bounds a hung command; not a speed assertion
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[start:].decode(errors="replace") if self.log.exists() else ""
            found = re.search(rf"__END_{mark}_(\d+)__", text.split("\n", 1)[-1])  # past the echoed line
            if found:
                return int(found.group(1)), text
            time.sleep(0.5)
        raise AssertionError(
            f"{command!r} did not finish in {timeout:.0f} s; the terminal showed:\n{text[-3000:]}"
        )

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.mark.slow
def test_the_readme_from_a_fresh_clone_to_a_pasted_trial(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux not found (install it with `apt-get install tmux`; .ci/run does)")
    clone = fresh_copy(tmp_path / "clone")
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "MLFLOW", "RAY_", "HTTP_PROXY", "NO_PROXY")  # the README sets them
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    env["PS1"] = "$ "
    term = Terminal(clone, env)
    try:
        code, out = term.type("make setup", timeout=1500)
        assert code == 0 and (clone / ".venv" / "bin" / "completep-sweep").exists(), out[-3000:]
        assert term.type("source .venv/bin/activate && command -v completep-sweep", timeout=30)[0] == 0
        assert term.type("set -a; . ./loopback.env; set +a", timeout=30)[0] == 0

        code, out = term.type("completep-sweep run sweeps/quickstart.toml", timeout=900)
        assert code == 0 and "sweep quickstart: 48 ran" in out, out[-3000:]

        code, report = term.type("completep-sweep report quickstart", timeout=300)
        assert code == 0 and "What to use" in report, report[-3000:]
        answer = report[report.index("What to use") : report.index("\nTransfer:")]
        assert max(map(len, answer.replace("\r", "").splitlines())) <= COLUMNS, answer
        assert "µP:" in answer and "CompleteP:" in answer

        export = "completep-sweep export quickstart --target-depth 16 --format toml > pasted.toml"
        assert term.type(export, timeout=300)[0] == 0
        pasted = tomllib.loads((clone / "pasted.toml").read_text())
        assert pasted["grid"]["depth"] == [16] and pasted["train"]["steps"] == 80
        code, out = term.type("completep-sweep validate pasted.toml", timeout=120)
        assert code == 0 and "valid" in out, out[-2000:]

        line = (clone / "pasted.toml").read_text().strip().splitlines()[-1]
        assert line.startswith("# completep-sweep trial ")
        code, out = term.type(line[2:], timeout=600)  # the block's own trial line, as pasted
        assert code == 0 and "80 steps" in out and "ok: final" in out, out[-3000:]
        assert "--steps 80" in line and "--batch-size 8" in line  # the quickstart's tuned settings
    finally:
        term.close()
