"""Evaluation: accuracy per domain (1 / 5 / 10 crops), and the Table-1-style results table (METHOD §7).

A :class:`MethodResult` holds what one method achieved (accuracies, relative MACs and Params, θ̄_d); a list
of them plus the baseline (Finetune) accuracies makes :func:`results_table`, a plain
:class:`~mdlprune.experiments.report.Table` that prints as Markdown, with S, S_O and S_P.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..data.crops import predict
from ..method.metrics import s_o, s_p, s_score
from ..training.methods import METHODS
from .report import Table

__all__ = ["accuracy", "protocol_crops", "MethodResult", "results_table", "seed_spread"]


def protocol_crops(flip: bool) -> int:
    """The papers' test-time crops: 10 (five + mirrors) for domains trained with flips, else 5."""
    return 10 if flip else 5


@torch.no_grad()
def accuracy(model: nn.Module, loader, domain: int | str | None = None, crops: int = 1, crop_size: int | None = None) -> float:
    """Top-1 accuracy (%) over ``loader``. With ``crops`` 5 or 10, the loader must yield uncropped images
    (``full=True``) and predictions are averaged over the crops (:func:`mdlprune.data.crops.predict`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if crops == 1 and crop_size is None:
            out = model(x) if domain is None else model(x, domain)
        else:
            out = predict(model, x, domain, crops=crops, size=crop_size)
        correct += (out.argmax(1) == y).sum().item()
        total += len(y)
    model.train(was_training)
    if total == 0:
        raise ValueError("the evaluation split has no images: nothing to measure an accuracy on")
    return 100.0 * correct / total


@dataclass
class MethodResult:
    """One row of the results table."""

    method: str
    beta: float | None
    accuracies: dict[str, float]
    rel_macs: float
    rel_params: float
    theta_bar: dict[str, float] | None = None
    union_fraction: float | None = None  # fraction of the network's switches on in some domain
    seconds: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MethodResult":
        return cls(**d)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "MethodResult":
        """A result back from its :meth:`row` (``docs/results/mini-sweep.json``): for tables and plots."""
        return cls(row["method"], row["beta"], dict(row["accuracies"]), row["macs"], row["params"],
                   row.get("theta_bar"), row.get("union"), row.get("seconds"), seed=row["seed"])  # fmt: skip

    @property
    def label(self) -> str:
        name = METHODS[self.method].label if self.method in METHODS else self.method
        name = name if self.beta is None else f"{name} β={self.beta:.2f}"
        return name if not self.seed else f"{name} (seed {self.seed})"

    def row(self, baseline: Mapping[str, float]) -> dict[str, Any]:
        """The machine-readable record of this result, with the S-scores against ``baseline``
        (its Finetune accuracies): the rows ``mdlprune sweep`` writes to ``OUT/mini-sweep.json``."""
        s = s_score({d: self.accuracies[d] for d in baseline}, baseline)
        return {"method": self.method, "beta": self.beta, "seed": self.seed, "accuracies": self.accuracies,
                "mean_accuracy": sum(self.accuracies.values()) / len(self.accuracies), "s_score": s,
                "s_o": s_o(s, self.rel_macs), "s_p": s_p(s, self.rel_params), "macs": self.rel_macs,
                "params": self.rel_params, "max_theta_bar": max(self.theta_bar.values()) if self.theta_bar else None,
                "theta_bar": self.theta_bar, "union": self.union_fraction, "seconds": self.seconds}  # fmt: skip


def results_table(results: Sequence[MethodResult], baseline: Mapping[str, float], title: str | None = None) -> Table:
    """The Table-1-style table: relative MACs and Params, accuracy per domain, S, S_O, S_P."""
    domains = list(baseline)
    table = Table(["method", "MACs", "Params", *domains, "S", "S_O", "S_P"], digits=3, title=title)
    for r in results:
        s = s_score({d: r.accuracies[d] for d in domains}, baseline)
        table.add(
            r.label, round(r.rel_macs, 3), round(r.rel_params, 3),
            *(f"{r.accuracies[d]:.1f}" for d in domains),
            f"{s:.0f}", f"{s_o(s, r.rel_macs):.0f}", f"{s_p(s, r.rel_params):.0f}",
        )  # fmt: skip
    return table


def seed_spread(results: Sequence[MethodResult], baseline: Mapping[str, float], title: str | None = None) -> Table:
    """Mean ± standard deviation over seeds of every (method, β) run with several seeds: mean accuracy, S, and
    the accuracy of each domain. What a difference between two methods must exceed to be more than noise."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r.method, r.beta), []).append(r.row(baseline))
    domains = list(baseline)
    table = Table(["method", "seeds", "mean accuracy", "S", *domains], title=title)
    for (method, beta), rows in groups.items():
        if len(rows) < 2:
            continue

        def spread(values):
            t = torch.tensor(values, dtype=torch.float64)
            return f"{float(t.mean()):.1f} ± {float(t.std()):.1f}"

        label = MethodResult(method, beta, {}, 0.0, 0.0).label
        table.add(label, len(rows), spread([r["mean_accuracy"] for r in rows]), spread([r["s_score"] for r in rows]),
                  *(spread([r["accuracies"][d] for r in rows]) for d in domains))  # fmt: skip
    return table
