"""The multi-domain model Ψ_d(x; θ₀, θ_d) (eq. 1): a backbone whose domain-specific layers follow ``domain``.

:func:`mdlprune.method.convert.to_multidomain` builds one from a pretrained CNN: the weights θ₀ stay frozen, and
the domain-specific parameters θ_d are switches on every convolution (:class:`~mdlprune.SwitchConv2d`), one
BatchNorm per domain (:class:`~mdlprune.DomainBatchNorm2d`) and one classifier head per domain.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
import torch.nn as nn

from .domain import DomainBatchNorm2d, DomainHeads, DomainModule
from .losses import ChannelUsage, channel_usage
from .switch import SwitchConv2d

__all__ = ["MultiDomainNet", "randomize_switches"]


class MultiDomainNet(nn.Module):
    """A backbone whose domain-specific layers are routed by the ``domain`` argument of ``forward``.

    Build one with :func:`~mdlprune.method.convert.to_multidomain`. ``forward(x, domain)`` takes a batch ``x`` of shape
    ``(N, in_channels, H, W)`` and a domain index (an ``int``, or a name from ``domain_names``).
    """

    keep_domain_models: bool = False  # eval passes served by one specialised model per domain (serving.py)

    def __init__(self, backbone: nn.Module, domain_names: Sequence[str], in_channels: int, head: str):
        super().__init__()
        self.backbone = backbone
        self.domain_names = tuple(domain_names)
        self.in_channels = in_channels
        self.head_name = head
        self.excluded: list[str] = []  # layers to_multidomain left shared
        self.refresh()

    # -- routing -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-index the domain-specific layers (call after replacing submodules or tensors by hand)."""
        self._domain_layers = tuple(m for m in self.backbone.modules() if isinstance(m, DomainModule))
        self.__dict__.pop("_domain_models", None)  # (serving.py)

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)

    def domain_index(self, domain: int | str) -> int:
        """The index of ``domain`` (an index or a name), or a ``ValueError`` that says what exists."""
        if isinstance(domain, str):
            try:
                return self.domain_names.index(domain)
            except ValueError:
                raise ValueError(
                    f"unknown domain {domain!r}: this model has domains {list(self.domain_names)}"
                ) from None
        if isinstance(domain, torch.Tensor) and domain.numel() == 1:
            domain = domain.item()
        if isinstance(domain, bool):
            raise TypeError(f"domain must be an int index or a domain name, got the bool {domain}")
        try:
            d = operator.index(domain)
        except TypeError:
            raise TypeError(
                f"domain must be an int index or a domain name, got {type(domain).__name__}"
            ) from None
        if not 0 <= d < self.num_domains:
            raise ValueError(
                f"domain index {d} is out of range: this model has {self.num_domains} domains "
                f"(0..{self.num_domains - 1}: {list(self.domain_names)})"
            )
        return d

    def forward(self, x: torch.Tensor, domain: int | str) -> torch.Tensor:
        d = self.domain_index(domain)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor batch of images, got a {type(x).__name__}: convert it with "
                            "torch.as_tensor(x, dtype=torch.float32)")  # fmt: skip
        dtype = next((p.dtype for p in self.parameters()), x.dtype)
        if x.dtype != dtype:
            raise TypeError(f"the images are {x.dtype} but the model computes in {dtype}: normalise them to floats "
                            f"first (e.g. x.to({dtype}) / 255 for uint8 images, then the domain's mean and std)")  # fmt: skip
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a batch of images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
                + (
                    f": the backbone's first convolution reads {self.in_channels} channels"
                    if x.dim() == 4
                    else ""
                )
            )
        if (self.keep_domain_models and not self.training and not torch.is_grad_enabled()
                and not torch.compiler.is_compiling() and not torch.jit.is_tracing()):  # fmt: skip
            from .serving import domain_model  # (it builds on this module)

            plain = domain_model(self, d)
            if plain is not None:
                return plain(x)
        for layer in self._domain_layers:  # (through __dict__: nn.Module.__setattr__ costs more than the layers' work at batch 1)
            layer.__dict__["active_domain"] = d
        return self.backbone(x)

    def __getstate__(self) -> dict:  # the domains' kept models (serving.py) are not part of the model
        state = dict(super().__getstate__())
        state.pop("_domain_models", None)
        return state

    def _apply(self, fn, recurse: bool = True):  # to(), cuda(), half(): new tensors, so nothing kept holds
        self.__dict__.pop("_domain_models", None)
        return super()._apply(fn, recurse)

    def load_state_dict(self, *args, **kwargs):  # (assign=True puts new tensors in)
        self.__dict__.pop("_domain_models", None)
        return super().load_state_dict(*args, **kwargs)

    # -- switches ----------------------------------------------------------------------------------
    def switch_layers(self) -> list[tuple[str, SwitchConv2d]]:
        """``(name, layer)`` for every switch convolution, in module order; names are relative to
        ``backbone`` (e.g. ``"layer1.0.conv1"``)."""
        return [(n, m) for n, m in self.backbone.named_modules() if isinstance(m, SwitchConv2d)]

    def layer_masks(self) -> dict[str, torch.Tensor]:
        """``{layer name: BoolTensor(num_domains, in_channels)}``: which channels each domain uses."""
        return {n: m.channel_masks() for n, m in self.switch_layers()}

    def channel_usage(self) -> ChannelUsage:
        """θ̄_d of every domain and the fractions of switches on in every / in some domain (METHOD §3-4)."""
        return channel_usage(self.layer_masks(), self.domain_names)

    def binary_masks(self) -> torch.Tensor:
        """The differentiable binary switches of all layers, ``(num_domains, M)`` with M = Σ_l C_l.

        This is what the budget and sharing losses read (METHOD §3-4); gradients flow straight through
        to the switches.
        """
        return torch.cat([m.binary_switches() for _, m in self.switch_layers()], dim=1)

    @property
    def num_switches(self) -> int:
        """M, the number of switches per domain."""
        return sum(m.in_channels for _, m in self.switch_layers())

    # -- parameter groups (the optimizers of METHOD §5) --------------------------------------------
    @property
    def heads(self) -> DomainHeads:
        return self.backbone.get_submodule(self.head_name)

    def switch_parameters(self) -> list[nn.Parameter]:
        return [m.switches for _, m in self.switch_layers()]

    def domain_parameters(self) -> list[nn.Parameter]:
        """Per-domain BatchNorm affine parameters and the heads (trained with SGD in the paper)."""
        params = []
        for m in self.backbone.modules():
            if isinstance(m, (DomainBatchNorm2d, DomainHeads)):
                params.extend(m.parameters())
        return params

    def extra_repr(self) -> str:
        return f"domains={list(self.domain_names)}"


@torch.no_grad()
def randomize_switches(
    model: MultiDomainNet, keep: float = 0.5, seed: int = 0, magnitude: float = 1e-3
) -> MultiDomainNet:
    """Set every switch to ``+magnitude`` (on) with probability ``keep``, else ``-magnitude`` (off).

    Each domain draws its own channels, so domains differ. Used by the smoke demo, the tests and the
    notebooks to exercise pruning without training. Returns ``model`` (modified in place).
    """
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be a probability in [0, 1], got {keep}")
    g = torch.Generator().manual_seed(seed)
    for _, layer in model.switch_layers():
        on = torch.rand(layer.switches.shape, generator=g) < keep
        layer.switches.copy_(torch.where(on, magnitude, -magnitude).to(layer.switches))
    return model
