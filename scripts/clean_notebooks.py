"""Strip the notebooks for committing: no outputs except those of cells marked ``# NBVAL_CHECK_OUTPUT`` (nbval
compares them), no execution counts, no widget state.

    python scripts/clean_notebooks.py notebooks/*.ipynb            # clean in place
    python scripts/clean_notebooks.py --execute notebooks/*.ipynb  # run in quick mode first (fills the checked outputs)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

MARK = "NBVAL_CHECK_OUTPUT"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        if MARK in cell.source:
            outputs = []
            for out in cell.outputs:
                if out.output_type == "execute_result":
                    out.execution_count = None
                out.pop("metadata", None) if out.get("metadata") == {} else None
                outputs.append(out)
            cell.outputs = outputs
        else:
            cell.outputs = []
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def execute(path: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    os.environ.setdefault("MDLPRUNE_QUICK", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--execute", action="store_true", help="execute (quick mode) before cleaning")
    args = parser.parse_args(argv)
    for path in args.paths:
        nb = execute(path) if args.execute else nbformat.read(path, as_version=4)
        nbformat.write(clean(nb), path)
        print(f"cleaned {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
