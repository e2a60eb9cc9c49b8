"""Shared by the benchmark scripts: machine description, result files."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine(device: str) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def save(name: str, device: str, rows: list[dict], **extra) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{device.split(':')[0]}.json"
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    path.write_text(json.dumps({"machine": machine(device), "command": command, **extra, "rows": rows}, indent=2) + "\n")
    return path


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns) + " |")
    return "\n".join(lines)
