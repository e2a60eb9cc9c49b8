"""Helpers for the course notebooks. The logic of every widget lives here (and is tested); a notebook's
``interact`` wrapper only calls it."""

from __future__ import annotations

import inspect
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchvision

from .. import __version__
from ..data.base import Benchmark
from ..experiments.runs import TrainedMethod, mini_config, shipped_run, train_method
from ..method.losses import BudgetLoss
from ..method.switch import binarize
from ..training.config import quick_mode

__all__ = ["Setup", "setup", "environment", "show_source", "load_or_train", "describe_run", "dual_ascent_toy", "plot_dual_ascent", "random_union",
           "plot_round_plans"]  # fmt: skip


@dataclass
class Setup:
    quick: bool
    device: str
    root: Path
    data_dir: Path
    checkpoints: Path

    def __str__(self) -> str:
        mode = "QUICK (MDLPRUNE_QUICK=1: small data, few rounds)" if self.quick else "full"
        return f"mode: {mode}\ndevice: {self.device}\ndata: {_short(self.data_dir)}\ncheckpoints: {_short(self.checkpoints)}"


def _short(path: Path) -> str:
    """``path`` relative to the repository or the home folder when inside one (pages show no machine's layout)."""
    for base, prefix in ((_default_root(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(Path(path).resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def _default_root() -> Path:
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "mdlprune").is_dir():
            return folder
    return here


def setup(root: str | os.PathLike | None = None, seed: int = 0) -> Setup:
    """Set up a notebook: the one overridable root (``MDLPRUNE_ROOT``, default the repository) holding
    ``data/cache`` and ``runs/notebooks/<mode>`` (checkpoints, shared by all notebooks: what one trained,
    the next loads), the device (a GPU when there is one), quick or full mode, and the seeds."""
    root = Path(root or os.environ.get("MDLPRUNE_ROOT") or _default_root()).expanduser().resolve()
    data_dir = Path(os.environ.setdefault("MDLPRUNE_DATA", str(root / "data" / "cache")))
    quick = quick_mode()
    checkpoints = root / "runs" / "notebooks" / ("quick" if quick else "full")
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    return Setup(quick, "cuda" if torch.cuda.is_available() else "cpu", root, data_dir, checkpoints)


def load_or_train(method: str, beta: float = 0.5, *, setup: Setup, bench: Benchmark, backbone: torch.nn.Module,
                  tag: str | None = None, sharing_loss=None, progress: bool = True, **overrides) -> TrainedMethod:
    """A notebook's trained run, the cheapest honest way: in full mode the shipped run of the committed sweep
    when one was trained with exactly these settings on this data (seconds), else this notebook series'
    checkpoint when an earlier notebook trained it, else train now (quick mode always trains: CI checks it)."""
    config = mini_config(method, beta, **overrides)
    if not setup.quick and tag is None and sharing_loss is None:
        run = shipped_run(method, bench, backbone, config)
        if run is not None:
            return run
    return train_method(method, backbone, bench, config, device=setup.device, checkpoint_dir=setup.checkpoints,
                        tag=tag, sharing_loss=sharing_loss, progress=progress)  # fmt: skip


def describe_run(run: TrainedMethod) -> str:
    """Where a run comes from and how long its training took, for a notebook to print."""
    where = {"trained": "trained now", "resumed": "resumed from its checkpoint and finished now",
             "loaded": "loaded from the checkpoint an earlier notebook wrote",
             "shipped": "rebuilt from the shipped results of the committed sweep (data/results/)"}[run.origin]  # fmt: skip
    return f"{run.tag or run.method}: {where}; its training took {run.seconds:.0f} s"


def environment() -> dict[str, str]:
    """Versions and hardware, for the first cell of a notebook."""

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "mdlprune": __version__,
        "cpu threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "none (CPU only)",
    }
    return info


def show_source(obj) -> None:
    """Print the source of a function, method or class of the package (what the notebook teaches is the
    code that runs, not a copy of it)."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code, display

        display(Code(source, language="python"))
    except ImportError:  # plain Python
        print(source)


def dual_ascent_toy(beta: float, lr_lambda: float = 0.05, steps: int = 1500, num_switches: int = 200,
                    lr: float = 1e-3, seed: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """The budget's Lagrangian on a toy task: switch c is worth ``importance[c]`` to the task, so the task
    loss is −Σ_c importance_c · b_c / M. Adam on the switches, dual ascent on λ (eq. 4).

    Returns per-step ``theta`` (θ̄) and ``lam`` (λ), and at the end ``kept_importance`` (mean importance of
    the switches kept) and ``best_importance`` (that of the best switches a budget β allows)."""
    g = torch.Generator().manual_seed(seed)
    importance = torch.rand(num_switches, generator=g)
    s = torch.full((1, num_switches), 1e-3, requires_grad=True)
    opt = torch.optim.Adam([s], lr=lr)
    budget = BudgetLoss(1, beta, lr_lambda)
    theta, lam = [], []
    for _ in range(steps):
        b = binarize(s)
        loss = -(importance * b[0]).sum() / num_switches + budget(b, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        after = binarize(s.detach())
        budget.dual_step(after, 0)
        theta.append(int(after.sum()) / num_switches)  # exact: float32 would read 0.3 as 0.30000001
        lam.append(float(budget.lam[0]))
    kept = s.detach()[0] > 0
    k = max(1, int(beta * num_switches))
    return {
        "theta": theta,
        "lam": lam,
        "kept_importance": [float(importance[kept].mean()) if kept.any() else 0.0],
        "best_importance": [float(importance.topk(k).values.mean())],
    }


def plot_dual_ascent(beta: float = 0.5, lr_lambda: float = 0.05):
    """The β-slider widget's plot: θ̄ and λ over the steps of :func:`dual_ascent_toy`."""
    run = dual_ascent_toy(beta, lr_lambda)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(run["theta"], label="θ̄ (fraction of switches on)")
    a.axhline(beta, color="k", ls="--", lw=1, label="β")
    a.set_xlabel("step")
    a.set_ylabel("θ̄")
    a.set_ylim(0, 1.05)
    a.legend(fontsize=8)
    b.plot(run["lam"], color="tab:red")
    b.set_xlabel("step")
    b.set_ylabel("λ")
    b.set_title(f"kept switches' importance {run['kept_importance'][0]:.3f} (best possible {run['best_importance'][0]:.3f})", fontsize=9)
    fig.tight_layout()
    return fig


def random_union(num_domains: int, beta: float) -> float:
    """Expected fraction of channels used by *some* domain when each domain keeps a random fraction β of
    them independently: 1 − (1 − β)^N. Why BA² cannot prune: with 5 domains at β = 0.5 it is 97 %."""
    return 1.0 - (1.0 - beta) ** num_domains


def plot_round_plans(plans: dict[str, list[tuple[int, ...]]], domain_names: list[str]):
    """One row per schedule: which domains each training step of a round uses."""

    fig, axes = plt.subplots(len(plans), 1, figsize=(10, 1.2 * len(plans) + 0.6), squeeze=False)
    for ax, (name, plan) in zip(axes[:, 0], plans.items()):
        grid = np.full((len(domain_names), len(plan)), np.nan)
        for k, step in enumerate(plan):
            for d in step:
                grid[d, k] = d
        ax.imshow(grid, aspect="auto", cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        ax.set_yticks(range(len(domain_names)), domain_names, fontsize=7)
        ax.set_title(f"{name}: {len(plan)} steps per round", fontsize=9)
        ax.set_xlabel("training step in the round")
    fig.tight_layout()
    return fig
