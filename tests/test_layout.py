"""The package's architecture, checked: folders are layers, data flows one way, citations resolve."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mdlprune"
#: the layers, lowest first: a module may import from its own layer and the ones before it, never after
LAYERS = ["method", "training", "data", "experiments", "course"]
#: what the method layer may import besides itself: the standard library, torch and THOP
METHOD_THIRD_PARTY = {"torch", "thop"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute names of what ``path`` imports (relative imports resolved), with line numbers."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base in ("mdlprune",)]
    return out


def test_every_module_belongs_to_a_layer():
    loose = [p.relative_to(PACKAGE).as_posix() for p in _modules() if p.parent == PACKAGE
             and p.name not in ("__init__.py", "__main__.py")]  # fmt: skip
    assert not loose, f"modules outside the layer folders {LAYERS}: {loose}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_layer_imports_from_a_layer_above_it(path):
    here = _layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
    if here is None:  # mdlprune/__init__.py and __main__.py: the public API re-exports
        return
    for line, name in _imports(path):
        top = name.split(".")[0]
        if top != "mdlprune":
            if here == "method":
                assert top in METHOD_THIRD_PARTY or top in sys.stdlib_module_names or top == "__future__", (
                    f"{path.name}:{line}: the method layer imports only torch and THOP, not {name}"
                )
            continue
        there = _layer(name)
        if there is None:  # the package root: only the top layers may read it (for __version__)
            assert name in ("mdlprune", "mdlprune.__version__") and LAYERS.index(here) >= LAYERS.index("experiments"), (
                f"{path.name}:{line}: {here} imports {name} from the package root"
            )
            continue
        assert LAYERS.index(there) <= LAYERS.index(here), (
            f"{path.relative_to(PACKAGE)}:{line}: the {here} layer imports {name} from the {there} layer above it"
        )


def test_modules_are_small():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in _modules()}
    assert not {k: v for k, v in sizes.items() if v > 400}, "modules over 400 lines"
    method = {k: v for k, v in sizes.items() if k.startswith("method/") and v > 260}
    assert not method, f"the method layer's modules are meant to be read in one sitting (~250 lines): {method}"


def test_methods_are_not_chosen_by_name():
    """Methods are rows of one table (mdlprune.training.methods): nowhere else compares a method's name."""
    from mdlprune.training.methods import METHODS

    offenders = []
    for path in _modules():
        if path.name == "methods.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
                if any(c in METHODS for c in consts):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, f"method names compared outside the method table: {offenders}"


# -- citations ---------------------------------------------------------------------------------------------
CITATION = re.compile(r"METHOD(?:\.md)? §(\d+)(?:[-–](\d+))?")


def _sections() -> dict[int, str]:
    text = (ROOT / "docs" / "METHOD.md").read_text()
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^## (\d+)\. (.+)$", text, re.M)}


def _texts():
    for path in [*_modules(), *(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "DEVELOPERS.md",
                 *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:  # fmt: skip
        yield path.relative_to(ROOT).as_posix(), path.read_text()
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        for k, cell in enumerate(json.loads(path.read_text())["cells"]):
            yield f"{path.relative_to(ROOT).as_posix()} cell {k}", "".join(cell["source"])


def test_method_document_has_numbered_sections():
    assert sorted(_sections()) == list(range(1, len(_sections()) + 1)) and len(_sections()) >= 9


def test_every_cited_method_section_exists():
    sections, cited, missing = _sections(), 0, []
    for where, text in _texts():
        if where == "tests/test_layout.py":
            continue
        for m in CITATION.finditer(text):
            cited += 1
            for n in filter(None, m.groups()):
                if int(n) not in sections:
                    missing.append(f"{where}: {m.group(0)}")
    assert cited > 20, "the citation pattern found (almost) nothing: is the test still reading the right files?"
    assert not missing, f"citations of sections docs/METHOD.md does not have: {missing}"


def test_the_repository_does_not_cite_files_users_do_not_have():
    for where, text in _texts():
        if where != "tests/test_layout.py":
            assert "../shared" not in text and "METHOD_NOTES" not in text, where
