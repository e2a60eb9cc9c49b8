"""Strip the notebooks for committing: no outputs except those of cells marked ``# NBVAL_CHECK_OUTPUT`` (nbval
compares them, and needs them numbered as run: they are counted 1, 2, ...), no other execution counts, no widget
state.

    python scripts/clean_notebooks.py notebooks/*.ipynb            # clean in place
    python scripts/clean_notebooks.py --execute notebooks/*.ipynb  # run in quick mode first (fills the checked outputs)
    MDLPRUNE_QUICK=0 python scripts/clean_notebooks.py --execute --output-dir runs/full notebooks/05_pruning.ipynb
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat

MARK = "NBVAL_CHECK_OUTPUT"


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    checked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        if MARK in cell.source:
            checked += 1
            cell.execution_count = checked  # nbval compares outputs only of cells that were run
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


def execute(path: Path, timeout: float = 1800) -> nbformat.NotebookNode:
    """Run every code cell in a fresh kernel (quick mode unless MDLPRUNE_QUICK says otherwise), recording the
    outputs. We drive the kernel with jupyter_client directly: nbclient can stall on cells that display
    ipywidgets until its timeout runs out (jupyter/nbclient#312)."""
    from jupyter_client.manager import start_new_kernel

    os.environ.setdefault("MDLPRUNE_QUICK", "1")
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(path.parent))
    try:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            outputs: list = []

            def record(msg, outputs=outputs):
                kind = msg["header"]["msg_type"]
                if kind == "clear_output":
                    outputs.clear()
                elif kind == "stream" and outputs and outputs[-1].get("name") == msg["content"]["name"]:
                    outputs[-1].text += msg["content"]["text"]  # one output per run of the same stream
                elif kind in ("stream", "display_data", "execute_result", "error"):
                    outputs.append(nbformat.v4.output_from_msg(msg))

            reply = kc.execute_interactive(cell.source, timeout=timeout, output_hook=record, allow_stdin=False)
            cell.outputs = outputs
            if reply["content"]["status"] != "ok":
                error = reply["content"]
                raise RuntimeError(f"{path.name}: a cell failed ({error.get('ename')}: {error.get('evalue')}):\n{cell.source}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--execute", action="store_true", help="execute (quick mode) before cleaning")
    parser.add_argument("--output-dir", type=Path, help="with --execute: write the executed notebooks, all outputs "
                        "kept, to this folder and leave the originals alone (e.g. for a full run, MDLPRUNE_QUICK=0)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.output_dir and not args.execute:
        parser.error("--output-dir needs --execute")
    for path in args.paths:
        if args.output_dir:
            t0 = time.perf_counter()
            nb = execute(path)
            args.output_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.output_dir / path.name)
            print(f"executed {path} in {time.perf_counter() - t0:.0f} s → {args.output_dir / path.name}")
            continue
        nb = execute(path) if args.execute else nbformat.read(path, as_version=4)
        nbformat.write(clean(nb), path)
        print(f"cleaned {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
