"""Figures: which channels each domain uses, and the accuracy / cost trade-off (Pareto) of a β sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from ..method.metrics import s_score
from .evaluate import MethodResult

__all__ = ["mask_heatmap", "pareto_plot"]


def mask_heatmap(masks: Mapping[str, torch.Tensor], layers: Sequence[str] | None = None, domain_names: Sequence[str] | None = None, max_layers: int = 6):
    """For each layer, a domains × input-channels picture of the switches (dark = on), with the union and
    intersection rows underneath: what BA² leaves unprunable and what the sharing loss fixes."""
    names = list(layers) if layers is not None else _spread(list(masks), max_layers)
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.0 + 0.42 * len(names) * (next(iter(masks.values())).shape[0] + 2)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        m = masks[name].bool()
        rows = torch.cat([m, m.any(0, keepdim=True), m.all(0, keepdim=True)]).float()
        ax.imshow(rows.numpy(), cmap="Greys", aspect="auto", interpolation="nearest", vmin=0, vmax=1)
        labels = list(domain_names or [f"domain {d}" for d in range(m.shape[0])]) + ["union", "intersection"]
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.axhline(m.shape[0] - 0.5, color="tab:red", lw=1)
        ax.set_title(f"{name}: {int(m.any(0).sum())}/{m.shape[1]} channels used by some domain, "
                     f"{int(m.all(0).sum())} by all", fontsize=8)  # fmt: skip
        ax.set_xlabel("input channel", fontsize=7)
    fig.tight_layout()
    return fig


def _spread(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    step = (len(items) - 1) / (k - 1)
    return [items[round(i * step)] for i in range(k)]


def pareto_plot(results: Sequence[MethodResult], baseline: Mapping[str, float], title: str = ""):
    """Mean accuracy and S-score against relative MACs and Params, one line per method across β."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    styles = {"ours": ("tab:red", "o-"), "ba2": ("tab:blue", "s-"), "feature": ("tab:gray", "v"), "finetune": ("k", "^")}
    by_method: dict[str, list[MethodResult]] = {}
    for r in results:
        by_method.setdefault(r.method, []).append(r)
    for method, rs in by_method.items():
        rs = sorted(rs, key=lambda r: r.beta or 0)
        color, style = styles.get(method, ("tab:green", "d-"))
        label = rs[0].label.split(" β")[0]
        mean_acc = [sum(r.accuracies[d] for d in baseline) / len(baseline) for r in rs]
        score = [s_score({d: r.accuracies[d] for d in baseline}, baseline) for r in rs]
        for row, ys, ylabel in ((0, mean_acc, "mean accuracy (%)"), (1, score, "S-score")):
            for col, xs, xlabel in ((0, [r.rel_macs for r in rs], "relative MACs"), (1, [r.rel_params for r in rs], "relative Params")):
                ax = axes[row, col]
                ax.plot(xs, ys, style, color=color, label=label)
                for x, y, r in zip(xs, ys, rs):
                    if r.beta is not None:
                        ax.annotate(f"β={r.beta:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
    for ax in axes.flat:
        ax.axvline(1.0, color="k", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    params = [r.rel_params for r in results]
    ticks = [t for t in (0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 50) if min(params) / 1.5 <= t <= max(params) * 1.5]
    for ax in axes[:, 1]:  # Params span orders of magnitude (Finetune: N backbones): log axis, plain labels
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(title or "accuracy and S-score against cost (up and left is better)")
    fig.tight_layout()
    return fig
