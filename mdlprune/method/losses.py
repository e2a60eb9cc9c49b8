"""The budget loss (eq. 4) with dual ascent, and the parameter-sharing losses (eq. 5).

Everything here reads ``masks``: the differentiable binary switches of all layers, a tensor of shape
``(N, M)`` (N domains, M switches per domain) with values exactly 0.0 or 1.0 and straight-through
gradients (:meth:`mdlprune.MultiDomainNet.binary_masks`).

A sharing loss is *any* callable ``(masks, beta) -> scalar``. The built-in ones are small modules that
also carry their weight λ_PS (a buffer, so it is checkpointed) and can update it by dual ascent; a
function of your own plugs into the trainer unchanged::

    def my_loss(masks, beta):                       # masks: (N, M), beta: float
        shared = masks.prod(0).sum()                # channels every domain uses
        return (1 - shared / (masks.shape[1] * beta)).clamp(min=0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = [
    "check_beta",
    "theta_bar",
    "intersection",
    "union",
    "ChannelUsage",
    "channel_usage",
    "BudgetLoss",
    "SharingLoss",
    "IntersectionLoss",
    "UnionLoss",
    "JaccardLoss",
    "SHARING_LOSSES",
    "make_sharing_loss",
]


def check_beta(beta: float) -> float:
    """Return ``beta`` as a float, or raise if it is not a budget in (0, 1] (the one place β is checked)."""
    if isinstance(beta, bool):
        raise TypeError(f"the budget beta must be a number in (0, 1], got the bool {beta}")
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"the budget beta must be a number in (0, 1], got {beta!r}") from None
    if not 0.0 < b <= 1.0:
        raise ValueError(
            f"the budget beta must be in (0, 1], got {beta}: it is the fraction of the network's switches "
            "(or of its MACs/parameters, when cost-weighted) each domain may keep on; 1.0 means no budget"
        )
    return b


def theta_bar(masks: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """θ̄_d for every domain, shape ``(N,)``: the mean of domain d's binary switches (eq. 4).

    With ``weights`` (shape ``(M,)``, e.g. from :func:`mdlprune.method.macs.switch_costs`), each switch counts
    by the cost of its kernel slice, so θ̄_d is the fraction of the MACs (or parameters) domain d uses. With
    ``weights`` of shape ``(K, M)`` (K costs), the result is ``(N, K)``: θ̄ of every domain under every cost.
    """
    if weights is None:
        return masks.mean(dim=1)
    if weights.dim() == 2:
        return masks @ (weights / weights.sum(dim=1, keepdim=True)).T
    return (masks * weights).sum(dim=1) / weights.sum()


def intersection(masks: torch.Tensor) -> torch.Tensor:
    """I = Σ_c Π_d b_{d,c}: the number of switches that are on in *every* domain."""
    return masks.prod(dim=0).sum()


def union(masks: torch.Tensor) -> torch.Tensor:
    """U = Σ_c (1 − Π_d (1 − b_{d,c})): the number of switches that are on in *any* domain."""
    return (1 - (1 - masks).prod(dim=0)).sum()


@dataclass(frozen=True)
class ChannelUsage:
    """Which share of the network's switches the domains use: θ̄_d per domain (eq. 4), and the fractions
    I / M on in *every* domain and U / M on in *some* domain (eq. 5). What pruning keeps is U / M."""

    theta_bar: dict[str, float]
    intersection: float
    union: float


def channel_usage(layer_masks: Mapping[str, torch.Tensor], domain_names: Sequence[str] | None = None) -> ChannelUsage:
    """:class:`ChannelUsage` of ``{layer: BoolTensor(num_domains, channels)}`` (what
    :meth:`mdlprune.MultiDomainNet.layer_masks` returns), over the switches of every layer."""
    masks = torch.cat([m.float() for m in layer_masks.values()], dim=1)
    names = list(domain_names) if domain_names is not None else [f"domain{d}" for d in range(masks.shape[0])]
    m = masks.shape[1]
    return ChannelUsage({n: float(t) for n, t in zip(names, theta_bar(masks))},
                        float(intersection(masks) / m), float(union(masks) / m))  # fmt: skip


class BudgetLoss(nn.Module):
    """L_B(d) = max(0, λ_d (θ̄_d − β)) with one KKT multiplier λ_d ≥ 0 per domain (eq. 4, METHOD §3).

    The switches descend on L_B; the multipliers ascend (:meth:`dual_step`):
    λ_d ← max(0, λ_d + η_λ (θ̄_d − β)) after each step of domain d. λ_d grows while domain d is over
    budget and decays back to zero once it is under.

    Args:
        num_domains: N.
        beta: the budget β ∈ (0, 1].
        lr_lambda: the dual step size η_λ. The gradient L_B puts on one switch is λ_d / M (M switches),
            so λ_d must reach about M × |∂CE/∂s| before the budget wins over the task. The default 1.0 is
            the value that met every domain's budget within 8 epochs on the mini-decathlon without
            overshooting (0.05 left the smallest domain over budget, 2.0 overshot it: docs/RESULTS.md).
        weights: optional per-switch costs ``(M,)`` for the cost-weighted θ̄ (β becomes a MAC or
            parameter budget), or ``(K, M)`` for K budgets at once (e.g. switches and MACs): every domain then
            has K multipliers, ``lam`` is ``(N, K)``, and L_B(d) = Σ_k max(0, λ_{d,k} (θ̄_{d,k} − β)), each
            ascending on its own violation. A domain meets its budget when it meets all K.
    """

    lam: torch.Tensor

    def __init__(self, num_domains: int, beta: float, lr_lambda: float = 1.0, weights: torch.Tensor | None = None):
        super().__init__()
        self.beta = check_beta(beta)
        if not lr_lambda >= 0:
            raise ValueError(f"lr_lambda (the dual step size) must be >= 0, got {lr_lambda}")
        if isinstance(num_domains, bool) or not isinstance(num_domains, int) or num_domains < 1:
            raise ValueError(f"num_domains must be a positive int, got {num_domains!r}")
        self.lr_lambda = float(lr_lambda)
        if weights is not None and (weights.dim() not in (1, 2) or (weights < 0).any() or (weights.sum(-1) <= 0).any()):
            raise ValueError(f"budget weights are (M,) or (K, M) costs >= 0, each summing to > 0; got {weights.shape}")
        costs = () if weights is None or weights.dim() == 1 else (weights.shape[0],)
        self.register_buffer("lam", torch.zeros(num_domains, *costs))
        self.register_buffer("weights", None if weights is None else weights.detach().float().clone())

    def theta_bar(self, masks: torch.Tensor) -> torch.Tensor:
        """θ̄ of every domain, ``(N,)``, or ``(N, K)`` with K costs (cost-weighted if the loss has weights)."""
        return theta_bar(masks, self.weights)

    def forward(self, masks: torch.Tensor, domain: int) -> torch.Tensor:
        self._check(masks, domain)
        tb = theta_bar(masks[domain : domain + 1], self.weights)[0]
        return (self.lam[domain] * (tb - self.beta)).clamp(min=0).sum()  # (the sum: over K costs, if several)

    def _check(self, masks: torch.Tensor, domain: int) -> None:
        n = len(self.lam)
        if masks.dim() != 2 or masks.shape[0] != n:
            raise ValueError(f"masks must be (num_domains={n}, M) binary switches (MultiDomainNet.binary_masks()), "
                             f"got shape {tuple(masks.shape)}")  # fmt: skip
        if isinstance(domain, bool) or not isinstance(domain, int) or not 0 <= domain < n:
            raise ValueError(f"domain must be an index in 0..{n - 1} (this budget has {n} domains), got {domain!r}")

    @torch.no_grad()
    def dual_step(self, masks: torch.Tensor, domain: int) -> torch.Tensor:
        """λ_d ← max(0, λ_d + η_λ (θ̄_d − β)); returns the new λ_d (0-d, or ``(K,)`` with K costs; no device sync)."""
        self._check(masks, domain)
        tb = theta_bar(masks[domain : domain + 1].detach(), self.weights)[0]
        self.lam[domain] = (self.lam[domain] + self.lr_lambda * (tb - self.beta)).clamp(min=0)
        return self.lam[domain]

    def extra_repr(self) -> str:
        w = "" if self.weights is None else ", cost-weighted"
        w += f", {len(self.weights)} budgets" if w and self.weights.dim() == 2 else ""
        return f"beta={self.beta}, lr_lambda={self.lr_lambda}{w}"


class SharingLoss(nn.Module):
    """A parameter-sharing loss ``max(0, λ_PS · g(masks, β))`` for a constraint ``g ≤ 0`` (METHOD §4).

    Subclasses define :meth:`constraint`. With ``learnable=True`` the weight λ_PS is a multiplier updated
    by dual ascent like λ_d: λ_PS ← max(0, λ_PS + η_PS · g) after every step (our formulation of the
    journal version's learnable weight).

    Args:
        lambda_ps: the weight λ_PS (a buffer, so checkpoints keep it).
        learnable: update λ_PS by dual ascent (:meth:`dual_step`).
        lr_lambda_ps: the dual step size η_PS.
    """

    lambda_ps: torch.Tensor

    def __init__(self, lambda_ps: float = 1.0, learnable: bool = False, lr_lambda_ps: float = 0.05):
        super().__init__()
        if not lambda_ps >= 0:
            raise ValueError(f"the sharing weight lambda_ps must be >= 0, got {lambda_ps}")
        self.register_buffer("lambda_ps", torch.tensor(float(lambda_ps)))
        self.learnable = learnable
        self.lr_lambda_ps = float(lr_lambda_ps)

    def constraint(self, masks: torch.Tensor, beta: float) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, masks: torch.Tensor, beta: float) -> torch.Tensor:
        return (self.lambda_ps * self.constraint(masks, check_beta(beta))).clamp(min=0)

    @torch.no_grad()
    def dual_step(self, masks: torch.Tensor, beta: float) -> torch.Tensor:
        """λ_PS ← max(0, λ_PS + η_PS g(masks, β)) if learnable; returns λ_PS (a 0-d tensor)."""
        if self.learnable:
            g = self.constraint(masks.detach(), beta)
            self.lambda_ps.copy_((self.lambda_ps + self.lr_lambda_ps * g).clamp(min=0))
        return self.lambda_ps

    def extra_repr(self) -> str:
        return f"lambda_ps={float(self.lambda_ps):g}, learnable={self.learnable}"


class IntersectionLoss(SharingLoss):
    """ICIAP'23 eq. 5: L_PS = max(0, λ_PS (1 − I / (M β))): grow the channels all domains share up to the
    budget."""

    def constraint(self, masks: torch.Tensor, beta: float) -> torch.Tensor:
        return 1 - intersection(masks) / (masks.shape[1] * beta)


class UnionLoss(SharingLoss):
    """Ours (METHOD §4): L = max(0, λ_PS (U / (M β) − 1)): shrink the channels *any* domain uses down to
    the budget, i.e. directly the size of the pruned model."""

    def constraint(self, masks: torch.Tensor, beta: float) -> torch.Tensor:
        return union(masks) / (masks.shape[1] * beta) - 1


class JaccardLoss(SharingLoss):
    """Ours (METHOD §4): L = λ_PS (1 − I / U): make the domains' channel sets identical, whatever their
    size. Its constraint is met only when I = U, so a learnable λ_PS keeps growing until then: prefer a
    fixed weight or a small ``lr_lambda_ps``."""

    def constraint(self, masks: torch.Tensor, beta: float) -> torch.Tensor:
        u = union(masks)
        return 1 - intersection(masks) / u.clamp(min=1)


SHARING_LOSSES: dict[str, type[SharingLoss]] = {
    "intersection": IntersectionLoss,
    "union": UnionLoss,
    "jaccard": JaccardLoss,
}


def make_sharing_loss(
    loss: str | Callable | None, lambda_ps: float = 1.0, learnable: bool = False, lr_lambda_ps: float = 0.05
) -> Callable | None:
    """A sharing loss from a name (``"intersection"``, ``"union"``, ``"jaccard"``), a callable (returned
    as is), or ``None``/``"none"`` (no sharing loss: BA²)."""
    if loss is None or (isinstance(loss, str) and loss.lower() == "none"):
        return None
    if isinstance(loss, str):
        try:
            cls = SHARING_LOSSES[loss.lower()]
        except KeyError:
            raise ValueError(
                f"unknown sharing loss {loss!r}: choose one of {sorted(SHARING_LOSSES)} or pass a callable "
                "(masks, beta) -> scalar"
            ) from None
        return cls(lambda_ps=lambda_ps, learnable=learnable, lr_lambda_ps=lr_lambda_ps)
    if callable(loss):
        return loss
    raise TypeError(f"a sharing loss is a name or a callable (masks, beta) -> scalar, got {type(loss).__name__}")
