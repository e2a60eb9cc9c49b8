"""Shared by the benchmark scripts: machine description, result files.

Records go to ``benchmarks/results/``, or to the folder ``MDLPRUNE_BENCHMARK_RESULTS`` names (the smoke tests' runs,
which must not overwrite the committed records)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mdlprune.experiments.provenance import machine_info as machine

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, device: str, rows: list[dict], **extra) -> Path:
    folder = Path(os.environ.get("MDLPRUNE_BENCHMARK_RESULTS") or RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{device.split(':')[0]}.json"
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    path.write_text(json.dumps({"machine": machine(device), "command": command, **extra, "rows": rows}, indent=2) + "\n")
    return path


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return "\n".join(lines)
