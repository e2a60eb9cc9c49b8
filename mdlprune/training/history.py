"""What a training run logs at every step, and the plots a student wants of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch

__all__ = ["History", "StepLog", "NonFiniteError"]


class History:
    """Per-step records (plain dicts of numbers), saved in checkpoints and plotted by :meth:`plot`.

    Every training step logs ``step``, ``round``, ``domain``, ``ce`` (the cross-entropy of the batch's
    domain), ``L_B``, ``L_PS``, ``lambda_<d>`` and ``theta_<d>`` for every domain d, ``lambda_ps``,
    ``intersection`` and ``union`` (in switches), and the learning rates. θ̄ is cost-weighted when the budget is
    (``train.cost_weighted``); with several costs, ``theta_<d>`` is the largest of the domain's fractions and
    ``lambda_<d>`` the sum of its multipliers, each cost's own logged as ``theta_<d>_<cost>``, ``lambda_<d>_<cost>``.
    ``budget_cost`` names what θ̄ counts (``None``: switches; ``"macs"``, ``"params"``, or several), for the plots.
    """

    def __init__(self, domain_names: Sequence[str] = (), records: list[dict] | None = None,
                 budget_cost: str | Sequence[str] | None = None):  # fmt: skip
        self.domain_names = list(domain_names)
        self.records: list[dict[str, Any]] = records or []
        costs = [budget_cost] if isinstance(budget_cost, str) else list(budget_cost or [])
        self.budget_cost: list[str] | None = None if costs in ([], ["switches"]) else costs

    def log(self, **values: Any) -> None:
        self.records.append(values)

    def __len__(self) -> int:
        return len(self.records)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def series(self, key: str, domain: int | None = None) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of ``key`` over the steps that logged it (only domain ``domain``'s steps if
        given)."""
        steps, values = [], []
        for r in self.records:
            if key in r and r[key] is not None and (domain is None or r.get("domain") == domain):
                steps.append(r["step"])
                values.append(r[key])
        return steps, values

    def last(self, key: str, default: Any = None) -> Any:
        for r in reversed(self.records):
            if key in r:
                return r[key]
        return default

    def smoothed(self, key: str, window: int = 20, domain: int | None = None) -> tuple[list[int], list[float]]:
        """A trailing moving average (noisy per-batch losses read better smoothed)."""
        steps, values = self.series(key, domain)
        out, acc = [], 0.0
        for i, v in enumerate(values):
            acc += v
            if i >= window:
                acc -= values[i - window]
            out.append(acc / min(i + 1, window))
        return steps, out

    def thinned(self, max_records: int) -> "History":
        """Every k-th record (and the last), at most about ``max_records``: the curves' shape, small enough
        to ship with a trained run."""
        k = max(1, math.ceil(len(self.records) / max_records))
        keep = self.records[::k]
        if self.records and keep[-1] is not self.records[-1]:
            keep.append(self.records[-1])
        return History(self.domain_names, [dict(r) for r in keep], self.budget_cost)

    def state_dict(self) -> dict:
        return {"domain_names": self.domain_names, "records": self.records, "budget_cost": self.budget_cost}

    @classmethod
    def from_state_dict(cls, state: dict) -> "History":
        return cls(state["domain_names"], list(state["records"]), state.get("budget_cost"))  # (older: switches)

    # -- plots -------------------------------------------------------------------------------------------
    def plot(self, what: str = "all", beta: float | None = None, axes=None):
        """Plot the training curves: ``"loss"`` (CE per domain, L_B, L_PS), ``"budget"`` (θ̄_d and λ_d),
        ``"sharing"`` (intersection and union), or ``"all"``. Returns the matplotlib figure."""
        panels = {"loss": self._plot_loss, "budget": self._plot_budget, "sharing": self._plot_sharing}
        names = list(panels) if what == "all" else [what]
        if any(n not in panels for n in names):
            raise ValueError(f"what must be one of {list(panels)} or 'all', got {what!r}")
        n_axes = sum(2 if n == "budget" else 1 for n in names)
        if axes is None:
            fig, axes = plt.subplots(1, n_axes, figsize=(4.6 * n_axes, 3.4), squeeze=False)
            axes = list(axes[0])
        else:
            axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
            fig = axes[0].figure
        i = 0
        for n in names:
            k = 2 if n == "budget" else 1
            panels[n](axes[i : i + k], beta)
            i += k
        fig.tight_layout()
        return fig

    def _plot_loss(self, axes, beta):
        ax = axes[0]
        for d, name in enumerate(self.domain_names):
            s, v = self.smoothed("ce", domain=d)
            if s:
                ax.plot(s, v, label=f"CE {name}", lw=1)
        for key, style in (("L_B", "k--"), ("L_PS", "k:")):
            s, v = self.smoothed(key)
            if s and any(x > 0 for x in v):
                ax.plot(s, v, style, label=key, lw=1.2)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss (moving average)")
        ax.set_title("losses")
        ax.legend(fontsize=7)

    def _plot_budget(self, axes, beta):
        ax_t, ax_l = axes
        for d, name in enumerate(self.domain_names):
            s, v = self.series(f"theta_{d}")
            if s:
                ax_t.plot(s, v, label=name, lw=1.2)
            s, v = self.series(f"lambda_{d}")
            if s:
                ax_l.plot(s, v, label=name, lw=1.2)
        if beta is not None:
            ax_t.axhline(beta, color="k", ls="--", lw=1, label="β")
        ax_t.set_xlabel("training step")
        costs = self.budget_cost
        ax_t.set_ylabel("θ̄_d (fraction of switches on)" if not costs else f"θ̄_d ({costs[0]}-weighted fraction on)"
                        if len(costs) == 1 else f"θ̄_d (largest of its {' / '.join(costs)} fractions)")  # fmt: skip
        ax_t.set_title("budget: θ̄_d per domain")
        ax_t.legend(fontsize=7)
        ax_l.set_xlabel("training step")
        ax_l.set_ylabel("λ_d")
        ax_l.set_title("dual ascent: multipliers λ_d")
        ax_l.legend(fontsize=7)

    def _plot_sharing(self, axes, beta):
        ax = axes[0]
        for key, label in (("union", "union U (on in any domain)"), ("intersection", "intersection I (on in all)")):
            s, v = self.series(key)
            if s:
                ax.plot(s, v, label=label, lw=1.2)
        m = self.last("num_switches")
        if m and beta is not None:
            ax.axhline(m * beta, color="k", ls="--", lw=1, label="M β")
        ax.set_xlabel("training step")
        ax.set_ylabel("switches")
        ax.set_title("sharing between domains")
        ax.legend(fontsize=7)



class NonFiniteError(ArithmeticError):
    """Training produced NaN or inf (a loss, a multiplier, a parameter): it stops instead of saving garbage."""


class StepLog:
    """Collects each step's logged values as tensors and turns them into numbers in batches.

    Converting a tensor to a Python float waits for the device; doing it for a dozen values every step would
    stall a GPU. :meth:`add` keeps one stacked tensor per step; :meth:`flush` moves all pending steps to the
    CPU with one transfer (averaged over ranks under ``torchrun``) and appends them to ``history``.
    """

    def __init__(self, history: History, world_size: int = 1):
        self.history, self.world_size = history, world_size
        self._pending: list[tuple[dict[str, Any], list[str], Any]] = []

    def add(self, record: dict[str, Any], values: dict[str, Any]) -> None:
        """``record``: plain numbers (step, round, domain, ...); ``values``: 0-d tensors of this step."""
        stacked = torch.stack([v.float().reshape(()) for v in values.values()])
        self._pending.append((record, list(values), stacked))

    def flush(self) -> None:
        if not self._pending:
            return
        stacked = torch.stack([t for _, _, t in self._pending])
        if self.world_size > 1:  # losses differ between ranks' shards: log their mean
            torch.distributed.all_reduce(stacked)
            stacked /= self.world_size
        for (record, keys, _), row in zip(self._pending, stacked.cpu().tolist()):
            bad = [k for k, v in zip(keys, row) if not math.isfinite(v)]
            if bad:
                self._pending.clear()
                raise NonFiniteError(f"training diverged at step {record['step']}: {', '.join(bad)} became NaN or inf; "
                                     "lower the learning rates (train.lr_domain, train.lr_switches) or the dual step "
                                     "train.lr_lambda")  # fmt: skip
            entry = dict(record)
            for k, v in zip(keys, row):
                if k.startswith("ce_"):  # a step on several domains (mixed schedule) logs their sum as "ce"
                    entry["ce"] = v if record["domain"] is not None else entry.get("ce", 0.0) + v
                entry[k] = v
            self.history.log(**entry)
        self._pending.clear()
