"""Figures: which channels each domain uses, and the accuracy / cost trade-off (Pareto) of a β sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import ListedColormap
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from ..method.metrics import s_score
from .evaluate import MethodResult

__all__ = ["mask_heatmap", "pareto_plot"]


_ON_OFF = ListedColormap(["#f2f2f2", "#303030"])  # a switch is off or on: two colours, not a gradient


def mask_heatmap(masks: Mapping[str, torch.Tensor], layers: Sequence[str] | None = None, domain_names: Sequence[str] | None = None, max_layers: int = 6):
    """For each layer, a domains × input-channels picture of the switches (dark = on), with the union and
    intersection rows underneath: what BA² leaves unprunable and what the sharing loss fixes."""
    names = list(layers) if layers is not None else _spread(list(masks), max_layers)
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.0 + 0.42 * len(names) * (next(iter(masks.values())).shape[0] + 2)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        m = masks[name].bool()
        rows = torch.cat([m, m.any(0, keepdim=True), m.all(0, keepdim=True)]).float()
        image = ax.imshow(rows.numpy(), cmap=_ON_OFF, aspect="auto", interpolation="nearest", vmin=0, vmax=1)
        bar = fig.colorbar(image, ax=ax, ticks=[0.25, 0.75], fraction=0.03, pad=0.01)
        bar.ax.set_yticklabels(["off", "on"], fontsize=7)
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
    """Mean accuracy and S-score against relative MACs and Params, one line per method across β (through the
    first seed's runs; the other seeds' runs are faint points around it)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    styles = {"ours": ("tab:red", "o-"), "ba2": ("tab:blue", "s-"), "feature": ("tab:gray", "v"), "finetune": ("k", "^")}
    by_method: dict[str, list[MethodResult]] = {}
    for r in results:
        by_method.setdefault(r.method, []).append(r)
    first_seed = min(r.seed for r in results)
    for method, runs in by_method.items():
        color, style = styles.get(method, ("tab:green", "d-"))
        for seed_runs, repeat in (([r for r in runs if r.seed == first_seed], False),
                                  ([r for r in runs if r.seed != first_seed], True)):  # fmt: skip
            rs = sorted(seed_runs, key=lambda r: r.beta or 0)
            mean_acc = [sum(r.accuracies[d] for d in baseline) / len(baseline) for r in rs]
            score = [s_score({d: r.accuracies[d] for d in baseline}, baseline) for r in rs]
            for row, ys, ylabel in ((0, mean_acc, "mean accuracy (%)"), (1, score, "S-score")):
                for col, xs, xlabel in ((0, [r.rel_macs for r in rs], "relative MACs"), (1, [r.rel_params for r in rs], "relative Params")):
                    ax = axes[row, col]
                    if repeat:  # other seeds: points only, the spread around the line
                        ax.plot(xs, ys, style[0], color=color, alpha=0.35, ms=4)
                        continue
                    ax.plot(xs, ys, style, color=color, label=rs[0].label.split(" β")[0] if rs else None)
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


def kept_channels_plot(model, pruned, domain_names: Sequence[str] | None = None):
    """Per switch layer: its input channels in the backbone, those each domain uses, and those the pruned
    model keeps (their union); underneath, parameter memory and MACs of backbone and pruned model."""
    masks = model.layer_masks()
    names = list(masks)
    kept = {n: m.weight.shape[1] for n, m in pruned.backbone.named_modules() if n in masks}
    total = [masks[n].shape[1] for n in names]
    fig, ax = plt.subplots(figsize=(10, 3.4))
    x = range(len(names))
    ax.bar(x, total, color="#dddddd", label="backbone (input channels)")
    ax.bar(x, [kept[n] for n in names], color="tab:red", alpha=0.75, label="pruned model (union of the domains)")
    labels = list(domain_names or [f"domain {d}" for d in range(next(iter(masks.values())).shape[0])])
    for d, label in enumerate(labels):
        ax.plot(x, [int(masks[n][d].sum()) for n in names], ".", ms=5, label=f"used by {label}")
    ax.set_xticks(list(x), [n.replace("layer", "L") for n in names], rotation=90, fontsize=6)
    ax.set_ylabel("input channels")
    ax.set_title(f"channels kept per layer: {sum(kept.values())} of {sum(total)} in all")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
