"""Physical pruning of a trained multi-domain model (ICIAP'23 §3.2, METHOD §6).

A switch convolution's input channel ``c`` can be removed when it is off in *every* domain. Each
:class:`~mdlprune.SwitchConv2d` becomes a dense :class:`PrunedConv2d` that keeps only the union of its
domains' channels, ``K[:, keep]``, plus, only where the domains still differ on the kept channels, one bit
per kept channel and domain.

Beyond the paper, pruning is *dependency-aware* (:mod:`mdlprune.method.dependencies`): where a producer's output
channel is read only by switch convolutions that all dropped it, the producer's filter and its
BatchNorm channels go too. Channels of a residual stream are read by additions and shortcuts as well, so
there only the consumer shrinks: it gathers the kept channels of its input (``in_index``).

Invariant (tested): for every domain d in eval mode, ``prune(model)(x, d)`` equals ``model(x, d)`` up to
float rounding.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .dependencies import channel_groups
from .domain import DomainBatchNorm2d, DomainModule, rebuild_batchnorm
from .multidomain import MultiDomainNet
from .switch import SwitchConv2d, conv2d

__all__ = ["PrunedConv2d", "prune", "Equivalence", "compare_outputs"]


class PrunedConv2d(DomainModule):
    """A dense frozen convolution over the channels some domain uses.

    ``weight`` has shape ``(out_kept, in_kept, kh, kw)``. ``in_index`` (or ``None``) lists which of the
    ``incoming_channels`` channels of its input tensor it reads; ``domain_masks`` (or ``None`` where every
    domain uses every kept channel) is a ``(num_domains, in_kept)`` BoolTensor: the switches that still differ
    between domains.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        conv: SwitchConv2d | nn.Conv2d,
        in_index: torch.Tensor | None = None,
        domain_masks: torch.Tensor | None = None,
        incoming_channels: int | None = None,
    ):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.kernel_size, self.padding_mode = conv.kernel_size, conv.padding_mode
        self._reversed_padding_repeated_twice = conv._reversed_padding_repeated_twice
        self.source_channels = (conv.in_channels, conv.out_channels)
        self.incoming_channels = weight.shape[1] if incoming_channels is None else incoming_channels
        self.register_buffer("in_index", in_index)
        self.register_buffer("domain_masks", domain_masks)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, domain: int | None = None) -> torch.Tensor:
        if self.in_channels == 0:
            return self._bias_only(x)
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        w = self.weight
        if self.domain_masks is not None:
            w = self._masked_weight(self.active_domain if domain is None else domain)
        return conv2d(self, x, w, self.bias)

    def _masked_weight(self, d: int) -> torch.Tensor:
        """``weight × domain_masks[d]``. Outside autograd, compilers and exporters, the product is kept per domain
        until the kernel or the masks change (moved, cast, edited or replaced): an eval forward pass does not
        multiply the masks into the kernel again."""
        w, masks = self.weight, self.domain_masks
        if ((torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling()
                or torch.compiler.is_exporting() or torch.jit.is_tracing()):  # fmt: skip
            return w * masks[d].to(w.dtype).view(1, -1, 1, 1)
        identity = (w.data_ptr(), w._version, w.dtype, w.device, masks.data_ptr(), masks._version)
        cache = self.__dict__.get("_masked_cache")
        if cache is None or cache[0] != identity:  # a new kernel or new masks: drop every domain's product
            cache = self.__dict__["_masked_cache"] = (identity, {})
        kernel = cache[1].get(d)
        if kernel is None or (kernel.is_inference() and not torch.is_inference_mode_enabled()):
            kernel = cache[1][d] = w * masks[d].to(w.dtype).view(1, -1, 1, 1)
        return kernel

    def __getstate__(self) -> dict:  # the cache is not part of the model: neither saved nor copied
        state = dict(super().__getstate__())
        state.pop("_masked_cache", None)
        return state

    def _bias_only(self, x: torch.Tensor) -> torch.Tensor:
        """A convolution that reads no channel outputs its bias (or zeros) at every position."""
        size = list(x.shape[2:])
        if self.padding != "same":  # (whatever the padding mode, it pads by the same amounts)
            padding = (0, 0) if self.padding == "valid" else self.padding
            size = [
                (n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(size, padding, self.dilation, self.kernel_size, self.stride)
            ]
        out = x.new_zeros(x.shape[0], self.out_channels, *size, dtype=self.weight.dtype)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        cin, cout = self.source_channels
        s = f"in {self.in_channels}/{cin}, out {self.out_channels}/{cout}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.in_index is not None:
            s += ", gathers its input"
        if self.domain_masks is not None:
            s += f", per-domain masks {tuple(self.domain_masks.shape)}"
        return s


@torch.no_grad()
def prune(model: MultiDomainNet, dependency_aware: bool = True) -> MultiDomainNet:
    """Return a new, physically smaller copy of ``model`` with the same ``forward(x, domain)``.

    Every :class:`SwitchConv2d` becomes a :class:`PrunedConv2d` that keeps the union over domains of its
    input channels. With ``dependency_aware`` (the default), producers whose output channels no consumer
    reads lose those filters and the matching BatchNorm channels. ``model`` is not modified.
    """
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"prune expects a MultiDomainNet (see mdlprune.to_multidomain), got {type(model).__name__}")
    if not model.switch_layers():
        raise ValueError("the model has no SwitchConv2d layers to prune: is it already pruned?")
    new = copy.deepcopy(model)
    backbone = new.backbone
    switches = dict(new.switch_layers())
    keep_in = {name: m.channel_masks().any(dim=0) for name, m in switches.items()}

    keep_out: dict[str, torch.Tensor] = {}  # producer -> BoolTensor over its output channels
    source: dict[str, str] = {}  # consumer -> the producer whose output it reads
    norm_keep: dict[str, torch.Tensor] = {}
    if dependency_aware:
        for group in channel_groups(backbone, (SwitchConv2d,)):
            needed = torch.stack([keep_in[c] for c in group.consumers]).any(dim=0)
            if needed.all():
                continue
            if not needed.any():
                # Every consumer ignores every channel. Keep one filter so that no zero-channel tensor
                # reaches BatchNorm or conv kernels (which reject them); the consumers read none of it.
                needed[0] = True
            keep_out[group.producer] = needed
            source.update((c, group.producer) for c in group.consumers)
            norm_keep.update((n, needed) for n in group.norms)

    for name, conv in switches.items():
        kin = keep_in[name].nonzero().squeeze(1)
        available = conv.in_channels
        positions = kin
        if name in source:
            produced = keep_out[source[name]].nonzero().squeeze(1)
            available = len(produced)
            positions = torch.searchsorted(produced, kin)
        in_index = None if torch.equal(positions, torch.arange(available, device=kin.device)) else positions
        weight, bias = conv.weight[:, kin], conv.bias
        if name in keep_out:
            kout = keep_out[name].nonzero().squeeze(1)
            weight, bias = weight[kout], None if bias is None else bias[kout]
        masks = conv.channel_masks()[:, kin]
        pruned = PrunedConv2d(weight, bias, conv, in_index, None if masks.all() else masks, available)
        backbone.set_submodule(name, pruned)

    for name, keep in keep_out.items():
        m = backbone.get_submodule(name)
        if isinstance(m, nn.Conv2d):  # a frozen conv left without switches (``exclude``)
            backbone.set_submodule(name, _slice_conv(m, keep.nonzero().squeeze(1)))
    for name, keep in norm_keep.items():
        backbone.set_submodule(name, _slice_norm(backbone.get_submodule(name), keep.nonzero().squeeze(1)))
    new.refresh()
    return new


def _slice_conv(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    new = nn.Conv2d(
        conv.in_channels, len(keep), conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    new.requires_grad_(False)
    return new.train(conv.training)


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    if isinstance(norm, DomainBatchNorm2d):
        new = DomainBatchNorm2d(len(keep), norm.num_domains)
        new.bns = nn.ModuleList(rebuild_batchnorm(bn, keep=keep) for bn in norm.bns)
        return new.train(norm.training)
    return rebuild_batchnorm(norm, keep=keep)


@dataclass
class Equivalence:
    """How far a pruned model's outputs are from the trained model's, over every domain."""

    max_abs_diff: float  # the largest |pruned(x, d) − model(x, d)| over domains and outputs
    output_scale: float  # the largest |model(x, d)|: the difference is judged relative to it

    def holds(self, rtol: float = 1e-5) -> bool:
        """True if the difference is finite and at most ``rtol`` × the output scale (NaN never holds)."""
        return math.isfinite(self.max_abs_diff) and self.max_abs_diff <= rtol * self.output_scale

    def __str__(self) -> str:
        return f"max |Δ| {self.max_abs_diff:.1e} (outputs up to {self.output_scale:.1f})"


@torch.no_grad()
def compare_outputs(model: MultiDomainNet, pruned: MultiDomainNet, x: torch.Tensor,
                    domains: Sequence[int] | None = None) -> Equivalence:  # fmt: skip
    """Run ``x`` through both models for every domain (or those of ``domains``), in eval mode, and measure
    the largest difference (the invariant of METHOD §6)."""
    diffs, scale = [], 0.0
    for d in range(model.num_domains) if domains is None else domains:
        a, b = model.eval()(x, d), pruned.eval()(x, d)
        diffs.append(float((a - b).abs().max()))  # NaN if any output is NaN
        scale = max(scale, float(a.abs().max()))
    diff = math.nan if any(math.isnan(v) for v in diffs) else max(diffs)
    return Equivalence(diff, scale)
