"""The README and docs/ pages: every relative link and every shipped file they name is there."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    text = page.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#")[0] for link in links if not link.startswith(("http", "#", "mailto:"))]
    missing = [link for link in local if link and not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_readme_names_only_sweep_files_that_ship():
    named = set(re.findall(r"sweeps/[\w.-]+\.toml", (ROOT / "README.md").read_text()))
    named.discard("sweeps/my-study.toml")  # the workflow's stand-in for the reader's own file
    assert "sweeps/quickstart.toml" in named
    assert all((ROOT / n).is_file() for n in named), sorted(n for n in named if not (ROOT / n).is_file())
