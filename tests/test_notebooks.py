"""The course notebooks are committed clean and follow the course's conventions."""

import json
import os
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
def test_committed_with_their_full_run(path):
    """Committed as built by scripts/build_notebooks.py: every code cell run in order with its outputs (plots as
    PNG), no widget state, progress bars as text, small; every checked fact True."""
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"], "no widget state: rebuild with scripts/build_notebooks.py"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in code] == list(range(1, len(code) + 1)), "run in order by scripts/build_notebooks.py"
    images = 0
    for cell in code:
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"a cell failed: {source(cell)[:60]!r}"
            data = out.get("data", {})
            assert not any("widget" in k for k in data), "widgets cannot show on a page: rebuild the notebook"
            images += "image/png" in data
            text = "".join(out.get("text", "")) + "".join(data.get("text/plain", ""))
            assert "\r" not in text, "progress bars saved frame by frame: rebuild the notebook"
            for name, value in re.findall(r"^CHECK ([^:]+): (\w+)$", text, re.M):
                expected = "False" if name in KNOWN_FALSE else "True"
                assert value == expected, f"the committed run says CHECK {name}: {value}"
    assert os.path.getsize(path) < 1_000_000, "keep the page small (PNG figures at modest dpi)"
    if path.name[:2] >= "02":
        assert images, "the page shows its results: at least one plot"


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


def test_every_package_name_the_course_mentions_exists():
    """A dotted ``mdlprune.…`` name in a notebook's markdown or in the docs resolves (a moved function's old
    address would send a student to nothing)."""
    import importlib

    texts = {p.name: "\n".join(source(c) for c in cells(p) if c["cell_type"] == "markdown") for p in NOTEBOOKS}
    docs = (ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *(ROOT / "docs").glob("*.md"))
    texts.update({str(p.relative_to(ROOT)): p.read_text() for p in docs})
    missing = []
    for name, text in texts.items():
        for dotted in sorted(set(re.findall(r"\bmdlprune(?:\.[A-Za-z_]\w*)+", text))):
            parts = dotted.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                try:
                    for attr in parts[cut:]:
                        obj = getattr(obj, attr)
                except AttributeError:
                    missing.append(f"{name}: {dotted}")
                break
            else:
                missing.append(f"{name}: {dotted}")
    assert not missing, missing


def test_the_source_a_notebook_shows_is_the_package_source():
    """``show_source(...)`` prints the package's code; the committed output must be that code today, not the code of
    the commit the notebook was last built at (a student reads the output on GitHub without running anything)."""
    package = "\n".join(p.read_text() for p in (ROOT / "mdlprune").rglob("*.py"))
    stale = []
    for path in NOTEBOOKS:
        for cell in cells(path):
            if cell["cell_type"] != "code" or "show_source(" not in source(cell):
                continue
            for out in cell.get("outputs", []):
                text = out.get("data", {}).get("text/plain") or out.get("text")
                text = "".join(text) if isinstance(text, list) else text
                if text and text.strip() and text.strip() not in package:
                    stale.append(f"{path.name}: {text.strip().splitlines()[0][:80]}")
    assert not stale, f"rebuild these notebooks (scripts/build_notebooks.py): {stale}"


def _math_is_balanced(text: str) -> bool:
    """Display math ``$$`` comes in pairs, and so does inline ``$`` outside it (code spans and escaped ``\\$``
    aside)."""
    text = re.sub(r"`[^`]*`", "", text).replace(r"\$", "")
    if text.count("$$") % 2:
        return False
    return text.replace("$$", "").count("$") % 2 == 0


def test_markdown_math_is_balanced():
    assert not _math_is_balanced("a $x$ and $y") and not _math_is_balanced("$$ x $") and _math_is_balanced("`$` $x$")
    for path in NOTEBOOKS:
        for k, cell in enumerate(cells(path)):
            if cell["cell_type"] == "markdown":
                assert _math_is_balanced(source(cell)), f"{path.name} cell {k}: unbalanced $ or $$"


def _exercises(path):
    """The notebook's 'Your turn' tasks (the student writes a key piece) and its numbered end exercises."""
    text = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    turns = re.findall(r"\*\*Your turn: ([^*]+)\*\*", text)
    end = text.split("## Exercises", 1)[1] if "## Exercises" in text else ""
    numbered = [int(n) for n in re.findall(r"^(\d+)\. ", end, re.M)]
    return turns, numbered


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_solution_kept_apart(path):
    turns, numbered = _exercises(path)
    assert numbered == list(range(1, len(numbered) + 1)) and numbered, "numbered exercises 1, 2, ... at the end"
    solutions = ROOT / "notebooks" / "solutions" / f"{path.stem}.md"
    assert solutions.is_file(), f"the solutions of {path.name} belong in notebooks/solutions/{path.stem}.md"
    text = solutions.read_text()
    for title in turns:
        assert f"## Your turn: {title.strip().rstrip('.')}" in text, f"no solution for the task 'Your turn: {title}'"
    for n in numbered:
        assert f"## Exercise {n}" in text, f"no solution for exercise {n}"
    for cell in cells(path):  # the solutions are not in the notebook
        assert "# Solution" not in source(cell), "solutions live in notebooks/solutions/, not in the notebook"


#: the facts each notebook demonstrates, checked by nbval in quick mode and true in the committed full run
REQUIRED_CHECKS = {
    "02": ["budget met"],
    "03": ["sharing shrinks the union"],
    "04": ["BA2 and Ours differ"],
    "05": ["pruned model is smaller", "pruned equals trained"],
    "06": ["S-score ranks Feature below Ours"],
    "07": ["your sharing loss was used"],
}


#: facts the course should demonstrate but the committed benchmark does not reach (open work, with the
#: measurements in docs/RESULTS.md): the notebook prints them as False, and these tests fail once one turns True,
#: so that it leaves this list
KNOWN_FALSE: dict[str, str] = {}  # CHECK name -> why the committed run prints False (none today)


@pytest.mark.parametrize("number", sorted(REQUIRED_CHECKS))
def test_each_notebook_checks_what_it_claims(number):
    path = next(p for p in NOTEBOOKS if p.name.startswith(number))
    printed = ""
    for cell in cells(path):
        if cell["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in source(cell):
            printed += "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in cell["outputs"])
    for name in REQUIRED_CHECKS[number]:
        value = "False" if name in KNOWN_FALSE else "True"
        assert f"CHECK {name}: {value}\n" in printed, f"{path.name}: no checked cell prints 'CHECK {name}: {value}'"
