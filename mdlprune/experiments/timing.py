"""Timing with ``torch.utils.benchmark`` (CPU, explicit threads) or CUDA events: warm-ups, medians, spread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.utils.benchmark as tb

__all__ = ["Timing", "measure"]


@dataclass
class Timing:
    """Median and interquartile range of a callable's run time, in milliseconds."""

    median_ms: float
    iqr_ms: float
    runs: int
    device: str
    threads: int | None

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms (IQR {self.iqr_ms:.3f}, {self.runs} runs, {self.device})"


def measure(fn: Callable[[], object], device: str | torch.device = "cpu", threads: int | None = None,
            min_run_time: float = 1.0, warmup: int = 3) -> Timing:  # fmt: skip
    """Time ``fn()``. On CPU, ``torch.utils.benchmark`` with ``threads`` threads (default: the current
    setting) and ``blocked_autorange``; on CUDA, CUDA events around each call after ``warmup`` calls."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        times = []
        total = 0.0
        while total < min_run_time * 1000 or len(times) < 10:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
            total += times[-1]
        t = torch.tensor(times)
        q = torch.quantile(t, torch.tensor([0.25, 0.5, 0.75]))
        return Timing(float(q[1]), float(q[2] - q[0]), len(times), "cuda", None)
    threads = threads or torch.get_num_threads()
    m = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads).blocked_autorange(min_run_time=min_run_time)
    return Timing(m.median * 1e3, m.iqr * 1e3, len(m.times), "cpu", threads)
