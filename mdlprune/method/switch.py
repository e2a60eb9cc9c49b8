"""The switch convolution of Budget-Aware Adapters (BA², Berriel et al., ICCV 2019, eqs. 2-3).

A frozen convolution kernel ``K ∈ R^{O×C×kh×kw}`` is shared by every domain. Domain ``d`` owns one real
switch per *input* channel, ``s_d ∈ R^C``. The forward pass uses the binary switch ``b_d = 1[s_d > 0]``:

    m(i, j) = g( Σ_c b_{d,c} φ_c(i, j) )                                       (eq. 3)

which is the convolution with the masked kernel ``K * b_d[None, :, None, None]``. The threshold is not
differentiable, so the backward pass uses the straight-through estimator: ``∂L/∂s_d := ∂L/∂b_d``
(METHOD §2). Train and test compute the same function because the switch is binary in both.

Grouped and depthwise convolutions (``groups = g``) keep the same meaning: one switch per input channel. Channel
``c`` belongs to group ``c // (C/g)`` and only that group's ``O/g`` filters read it, so switching it off zeroes
the kernel slice ``K[group's filters, c mod C/g]`` (:func:`kernel_mask`). In a depthwise convolution (one input
channel per group) a switched-off channel leaves its group's outputs at the bias: the layer stops computing that
channel, which is what lets pruning remove it (METHOD §2, §6).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .domain import DomainModule

__all__ = ["SwitchConv2d", "binarize", "conv2d", "kernel_mask", "select_channels"]


class _BinarizeSTE(torch.autograd.Function):
    """``b = 1[s > threshold]`` forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, threshold: float) -> torch.Tensor:
        return (s > threshold).to(s.dtype)

    @staticmethod
    def backward(ctx, grad_b: torch.Tensor):
        return grad_b, None


def binarize(s: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Binary switches ``1[s > threshold]`` whose gradient flows straight through to ``s``.

    The values are exactly 0.0 and 1.0, so a product or sum of them is an exact count: the sharing losses
    (METHOD §4) rely on this to compute intersections and unions of masks.
    """
    return _BinarizeSTE.apply(s, threshold)


def conv2d(conv, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d`` with ``weight`` and ``bias`` and the geometry of ``conv`` (stride, padding, dilation, groups
    and padding mode, as ``nn.Conv2d`` applies them): the one convolution call of the switch and pruned layers."""
    if conv.padding_mode != "zeros":
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        return F.conv2d(x, weight, bias, conv.stride, 0, conv.dilation, conv.groups)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


def select_channels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[:, index]``, the input gather of the pruned and specialised layers, in ``x``'s memory format: a
    ``channels_last`` batch is gathered along its innermost dimension and stays ``channels_last`` (``index_select``
    on dimension 1 would return it in NCHW order, and the next convolution would copy it back)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).index_select(3, index).permute(0, 3, 1, 2)
    return x.index_select(1, index)


def kernel_mask(b: torch.Tensor, groups: int, out_channels: int) -> torch.Tensor:
    """The multiplier ``(O, C/g, 1, 1)`` of a kernel ``(O, C/g, kh, kw)`` for the input-channel switches ``b``
    ``(C,)``: filter ``o`` (of group ``o // (O/g)``) reads its group's channels, so entry ``[o, i]`` is the switch
    of input channel ``(o // (O/g)) · C/g + i``. With ``groups = 1``, ``b`` broadcast over the filters."""
    if groups == 1:
        return b.view(1, -1, 1, 1)
    per_group = b.shape[0] // groups
    b = b.view(groups, 1, per_group).expand(groups, out_channels // groups, per_group)
    return b.reshape(out_channels, per_group, 1, 1)


class SwitchConv2d(DomainModule):
    """A frozen ``nn.Conv2d`` with one binary switch per input channel and domain (BA² eq. 3).

    Args:
        conv: the pretrained convolution to wrap (grouped and depthwise ones included); its kernel and bias
            are copied and frozen (``requires_grad=False``).
        num_domains: number of domains N; ``switches`` has shape ``(N, in_channels)``.
        init: initial value of every switch (the papers' 1e-3: every channel starts on, close enough to
            the threshold that a few optimizer steps can turn it off).

    ``forward(x, domain=None)`` uses ``domain`` if given, else ``active_domain`` (set by
    :class:`~mdlprune.MultiDomainNet` before each forward pass).
    """

    threshold: float = 0.0
    groups: int = 1  # (the default of models saved before grouped convolutions had switches)

    def __init__(self, conv: nn.Conv2d, num_domains: int, init: float = 1e-3):
        super().__init__()
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"SwitchConv2d wraps an nn.Conv2d, got {type(conv).__name__}")
        if num_domains < 1:
            raise ValueError(f"num_domains must be at least 1, got {num_domains}")
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.padding_mode = conv.padding_mode
        self._reversed_padding_repeated_twice = conv._reversed_padding_repeated_twice
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        if conv.bias is not None:
            self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self.switches = nn.Parameter(
            torch.full((num_domains, conv.in_channels), float(init), device=conv.weight.device)
        )

    @property
    def num_domains(self) -> int:
        return self.switches.shape[0]

    def channel_mask(self, domain: int) -> torch.Tensor:
        """BoolTensor ``(in_channels,)``: which input channels domain ``domain`` uses."""
        return self.switches[domain].detach() > self.threshold

    def channel_masks(self) -> torch.Tensor:
        """BoolTensor ``(num_domains, in_channels)`` of every domain's channels."""
        return self.switches.detach() > self.threshold

    def binary_switches(self) -> torch.Tensor:
        """Differentiable binary switches ``(num_domains, in_channels)`` (STE, for the losses)."""
        return binarize(self.switches, self.threshold)

    def forward(self, x: torch.Tensor, domain: int | None = None) -> torch.Tensor:
        d = self.active_domain if domain is None else domain
        b = binarize(self.switches[d], self.threshold)
        return conv2d(self, x, self.weight * kernel_mask(b, self.groups, self.out_channels), self.bias)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, num_domains={self.num_domains}"
        )
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
