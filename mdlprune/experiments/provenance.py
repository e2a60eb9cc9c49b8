"""Where a number comes from: the machine and the command, recorded next to every result we write."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

__all__ = ["machine", "machine_info", "code_commit", "command"]


def machine(device: str = "cpu") -> str:
    """``"x86_64, 2 threads; torch 2.15.0"``, with the GPU's name when ``device`` is a CUDA device."""
    cpu = platform.processor() or platform.machine()
    gpu = f", {torch.cuda.get_device_name()}" if str(device).startswith("cuda") else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}; torch {torch.__version__}"


def command(argv: list[str] | None = None, prog: str = "mdlprune") -> str:
    """The command line that is running (``argv`` defaults to ``sys.argv[1:]``), quoted for a shell."""
    return f"{prog} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


def machine_info(device: str = "cpu") -> dict:
    """The same as a record: date, CPU model, threads, torch, Python, device (and GPU), the git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu, "cores": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": device}  # fmt: skip
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    commit = code_commit()
    if commit:
        info["commit"] = commit
    return info


def code_commit() -> str | None:
    """The git commit of the code that runs: that of the repository holding this package (not of the working
    directory), with ``+uncommitted changes`` when its code (the package, the benchmark scripts, ``scripts/``)
    differs from the commit; ``None`` outside a git checkout (an installed package)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "mdlprune", "benchmarks/*.py", "scripts")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + (" +uncommitted changes" if changed else "")
