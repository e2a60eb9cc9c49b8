"""The course notebooks are committed clean and follow the course's conventions."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
tomllib = pytest.importorskip("tomllib")
HOMEPAGE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Homepage"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_the_whole_course_is_there():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(8)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean(path):
    size, checked = 0, 0
    for cell in cells(path):
        if cell["cell_type"] != "code":
            continue
        if "NBVAL_CHECK_OUTPUT" in source(cell):
            checked += 1  # nbval checks only cells that were run, numbered 1, 2, ... by scripts/clean_notebooks.py
            assert cell["execution_count"] == checked, "run `python scripts/clean_notebooks.py` on this notebook"
        else:
            assert cell["execution_count"] is None, "commit notebooks without execution counts"
            assert cell["outputs"] == [], f"only NBVAL_CHECK_OUTPUT cells keep outputs: {source(cell)[:60]!r}"
        for out in cell["outputs"]:
            assert "image/png" not in out.get("data", {}), "no images in committed outputs"
            size += len(json.dumps(out))
    assert size < 5000, f"committed outputs should stay small, got {size} characters"
    assert "widgets" not in json.loads(path.read_text())["metadata"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_course_conventions(path):
    cs = cells(path)
    first = source(cs[0])
    assert first.startswith(f"# {path.name[:2]} · "), "a numbered title first"
    assert "**What you will learn**" in first
    badge = f"{HOMEPAGE.replace('https://github.com', 'https://colab.research.google.com/github')}/blob/main/notebooks/{path.name}"
    assert badge in first, "an Open in Colab badge pointing at this notebook"
    install = source(cs[1])
    assert '"google.colab" in sys.modules' in install
    assert re.search(r'REPO_URL = "([^"]+)"', install).group(1) == HOMEPAGE, "the repository URL is pyproject's Homepage"
    text = "\n".join(source(c) for c in cs if c["cell_type"] == "markdown")
    assert "## Summary" in text and "## Exercises" in text
    checked = [c for c in cs if c["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in source(c)]
    assert checked and all(c["outputs"] for c in checked), "at least one checked cell, with its expected output"


def test_markdown_has_no_control_characters():
    """A lost backslash in LaTeX (\\frac, \\beta, \\tag written in a non-raw string) leaves a form feed, a
    backspace or a tab in the text. (A lost \\ne or \\nabla becomes a line break, which this cannot tell from a
    wanted one.)"""
    for path in NOTEBOOKS:
        for k, cell in enumerate(cells(path)):
            if cell["cell_type"] != "markdown":
                continue
            text = source(cell)
            bad = sorted({repr(ch) for ch in text if ord(ch) < 32 and ch != "\n"})
            assert not bad, f"{path.name} cell {k}: control characters {bad}"
