"""Per-domain layers: the domain-specific parameters θ_d of eq. 1 besides the switches.

BA² keeps BatchNorm domain-specific (affine parameters *and* running statistics: sharing them across
domains as different as SVHN and DTD performs poorly) and gives every domain its own classifier head.
Both select their parameters by the domain of the current batch.

Every layer whose behaviour depends on the domain derives from :class:`DomainModule`: it reads the
domain from ``active_domain``, which :class:`~mdlprune.MultiDomainNet` sets on all of them before the
backbone runs, so an unmodified torchvision ``forward`` (which calls ``self.bn1(x)`` with one argument)
routes every layer to the right domain.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DomainModule", "DomainBatchNorm2d", "DomainHeads", "rebuild_batchnorm"]


class DomainModule(nn.Module):
    """Base of the layers that hold one set of parameters per domain."""

    active_domain: int = 0


class DomainBatchNorm2d(DomainModule):
    """One ``nn.BatchNorm2d`` per domain (affine parameters and running statistics), selected by domain.

    ``bns[d]`` is domain ``d``'s BatchNorm; ``forward(x, domain=None)`` uses ``domain`` if given, else
    ``active_domain``.
    """

    def __init__(
        self,
        num_features: int,
        num_domains: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ):
        super().__init__()
        if num_domains < 1:
            raise ValueError(f"num_domains must be at least 1, got {num_domains}")
        self.num_features = num_features
        self.bns = nn.ModuleList(
            nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats) for _ in range(num_domains)
        )

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, num_domains: int) -> "DomainBatchNorm2d":
        """Every domain starts from a copy of the pretrained ``bn`` (parameters and running stats)."""
        new = cls(bn.num_features, num_domains, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.to(device=_device_of(bn))
        for d_bn in new.bns:
            d_bn.load_state_dict(bn.state_dict())
        return new

    @property
    def num_domains(self) -> int:
        return len(self.bns)

    def forward(self, x: torch.Tensor, domain: int | None = None) -> torch.Tensor:
        bn = self.bns[self.active_domain if domain is None else domain]
        if (bn.training or not bn.track_running_stats or type(bn) is not nn.BatchNorm2d or bn._forward_hooks
                or bn._forward_pre_hooks):  # fmt: skip  (hooks, e.g. THOP's counters, need the module call)
            return bn(x)
        # eval: the domain's BatchNorm applied directly, without a second module call (what nn.BatchNorm2d does then)
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_domains={self.num_domains}"


class DomainHeads(DomainModule):
    """One classifier per domain: ``heads[d]`` maps features to ``num_classes[d]`` logits.

    The heads are ``nn.Linear`` layers, or, with ``conv=True``, 1×1 ``nn.Conv2d`` layers for a backbone whose
    classifier is a convolution followed by pooling (SqueezeNet).
    """

    def __init__(self, in_features: int, num_classes: list[int], bias: bool = True, conv: bool = False):
        super().__init__()
        self.in_features = in_features
        if conv:
            self.heads = nn.ModuleList(nn.Conv2d(in_features, n, 1, bias=bias) for n in num_classes)
        else:
            self.heads = nn.ModuleList(nn.Linear(in_features, n, bias=bias) for n in num_classes)

    @property
    def num_classes(self) -> list[int]:
        return [h.out_features if isinstance(h, nn.Linear) else h.out_channels for h in self.heads]

    def forward(self, x: torch.Tensor, domain: int | None = None) -> torch.Tensor:
        return self.heads[self.active_domain if domain is None else domain](x)

    def extra_repr(self) -> str:
        kind = ", 1x1 convolutions" if isinstance(self.heads[0], nn.Conv2d) else ""
        return f"in_features={self.in_features}, num_classes={self.num_classes}{kind}"


def rebuild_batchnorm(bn: nn.BatchNorm2d, cls: type[nn.BatchNorm2d] = nn.BatchNorm2d,
                      keep: torch.Tensor | None = None) -> nn.BatchNorm2d:
    """A new ``cls`` with ``bn``'s settings, state, device, training mode and ``requires_grad`` flags;
    with ``keep`` (channel indices), only those channels. Pruning slices BatchNorms with it; distributed
    training swaps ``nn.BatchNorm2d`` for its synchronised subclass and back."""
    n = bn.num_features if keep is None else len(keep)
    new = cls(n, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    state = bn.state_dict()
    if keep is not None:
        state = {k: (v if v.dim() == 0 else v[keep.to(v.device)]) for k, v in state.items()}
    new.load_state_dict(state)
    new.to(device=_device_of(bn))
    for p_new, p_old in zip(new.parameters(), bn.parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    return new.train(bn.training)


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
