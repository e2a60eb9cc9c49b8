"""Build the course pages: run every notebook in a fresh kernel and save it with its outputs, as committed.

The notebooks are committed *with* the outputs of a full-mode run (plots and tables show on GitHub); CI runs
them again in quick mode under nbval, which compares only the cells marked ``# NBVAL_CHECK_OUTPUT`` (their
``CHECK <fact>: True`` lines hold in both modes).

    python scripts/build_notebooks.py notebooks/[0-9]*.ipynb                  # full mode: the committed pages
    MDLPRUNE_QUICK=1 python scripts/build_notebooks.py --output-dir runs/quick notebooks/[0-9]*.ipynb

Saved outputs are kept small and static: progress bars as their final line of text, no widget state (a widget
cannot show without its kernel; the notebooks draw a static plot next to each one), execution counts 1, 2, ...
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat

WIDGET = "application/vnd.jupyter.widget-view+json"
#: run silently before the first cell: progress bars as text (a saved widget shows nothing), so the saved page
#: keeps each bar's final line
PREAMBLE = "import tqdm.auto, tqdm.std\ntqdm.auto.tqdm = tqdm.std.tqdm\n"


#: a library's log line (glog format, e.g. torch's "W1125 22:39:36.612 ... No CUDA runtime is found"): not the page's
_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d[^\n]*\n?", re.M)


def _last_frames(text: str) -> str:
    """A terminal's view of a stream: of each line's carriage-return frames, the last non-empty one."""
    lines = []
    for line in text.split("\n"):
        frames = [f for f in line.split("\r") if f.strip()]
        lines.append(frames[-1] if frames else "")
    return "\n".join(lines)


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Static, small outputs; execution counts 1, 2, ... in order; no widget state."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        outputs = []
        for out in cell.outputs:
            if out.output_type == "stream":
                out.text = _last_frames(_LOG_LINE.sub("", out.text))
                if not out.text.strip():
                    continue
            elif out.output_type in ("display_data", "execute_result"):
                if WIDGET in out.data:
                    continue  # a widget: nothing to show without a kernel
                if out.output_type == "execute_result":
                    out.execution_count = count
            outputs.append(out)
        cell.outputs = outputs
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def execute(path: Path, timeout: float = 1800) -> nbformat.NotebookNode:
    """Run every code cell in a fresh kernel (full mode unless MDLPRUNE_QUICK says otherwise), recording the
    outputs. We drive the kernel with jupyter_client directly: nbclient can stall on cells that display
    ipywidgets until its timeout runs out (jupyter/nbclient#312)."""
    from jupyter_client.manager import start_new_kernel

    os.environ.setdefault("MDLPRUNE_QUICK", "0")
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):  # cells added by hand get an id (nbformat 5.1+ requires one)
        cell.setdefault("id", f"{path.stem[:2]}-{i:02d}-{abs(hash(''.join(cell.source))) % 10**6:06d}")
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(path.parent))
    try:
        kc.execute_interactive(PREAMBLE, timeout=60, allow_stdin=False)
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
    parser.add_argument("--output-dir", type=Path, help="write the built notebooks there and leave the originals alone")
    args = parser.parse_args(argv)
    total = time.perf_counter()
    for path in args.paths:
        t0 = time.perf_counter()
        nb = clean(execute(path))
        out = (args.output_dir or path.parent) / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
        print(f"built {path.name} in {time.perf_counter() - t0:.0f} s → {out}", flush=True)
    mode = "quick" if os.environ.get("MDLPRUNE_QUICK") == "1" else "full"
    print(f"{len(args.paths)} notebooks in {mode} mode: {(time.perf_counter() - total) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
