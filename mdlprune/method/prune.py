"""Physical pruning of a trained multi-domain model (ICIAP'23 §3.2, METHOD §6).

A switch convolution's input channel ``c`` can be removed when it is off in *every* domain. Each
:class:`~mdlprune.SwitchConv2d` becomes a dense :class:`PrunedConv2d` that keeps only the union of its
domains' channels, ``K[:, keep]``, plus, only where the domains still differ on the kept channels, one bit
per kept channel and domain.

Beyond the paper, pruning is *dependency-aware* (:mod:`mdlprune.method.dependencies`): where a producer's output
channel is read only by switch convolutions that all dropped it, the producer's filter and its
BatchNorm channels go too. Channels of a residual stream are read by additions and shortcuts as well, so
there only the consumer shrinks: it gathers the kept channels of its input (``in_index``). A grouped or
depthwise convolution keeps whole groups, as many channels in each (zero kernels pad the groups that keep fewer).
A padding slot reads channel 0 of the input (the fewest channels computed), or, with ``pad_own_channels``, an unfed
channel of its own group, which the producer then computes: a depthwise convolution then reads its input as it comes,
with no gather (faster on CPU, where gathers cost about what depthwise convolutions do; benchmarks/RESULTS.md).

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
from .domain import DomainBatchNorm2d, rebuild_batchnorm
from .multidomain import MultiDomainNet
from .pruned import PrunedConv2d
from .switch import SwitchConv2d

__all__ = ["prune", "Equivalence", "compare_outputs"]


@torch.no_grad()
def prune(model: MultiDomainNet, dependency_aware: bool = True, pad_own_channels: bool = False) -> MultiDomainNet:
    """Return a new, physically smaller copy of ``model`` with the same ``forward(x, domain)``.

    Every :class:`SwitchConv2d` becomes a :class:`PrunedConv2d` that keeps the union over domains of its
    input channels. With ``dependency_aware`` (the default), producers whose output channels no consumer
    reads lose those filters and the matching BatchNorm channels. ``pad_own_channels`` trades parameters and
    MACs for time on grouped convolutions (module docstring): producers compute the padding channels (MobileNetV2:
    +1 % to +13 % conv weights), and depthwise layers read their input without a padding gather. ``model`` is not
    modified.
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
        # Last producers first: a grouped consumer reads nothing of the groups whose outputs nobody reads, so what
        # its own producer must compute is known once the consumer's outputs are settled.
        for group in reversed(channel_groups(backbone, (SwitchConv2d,))):
            reads = [_padded_reads(switches[c], keep_in[c], keep_out.get(c)) if pad_own_channels and switches[c].groups > 1
                     else keep_in[c] for c in group.consumers]  # fmt: skip
            needed = torch.stack(reads).any(dim=0)
            producer = backbone.get_submodule(group.producer)
            g = producer.groups
            if g > 1:  # a grouped producer computes whole groups or none
                needed = needed.view(g, -1).any(dim=1).repeat_interleave(producer.out_channels // g)
            if needed.all():
                continue
            if not needed.any():
                # Every consumer ignores every channel. Keep one filter (group) so that no zero-channel tensor
                # reaches BatchNorm or conv kernels (which reject them); the consumers read none of it.
                needed[: producer.out_channels // g if g > 1 else 1] = True
            keep_out[group.producer] = needed
            source.update((c, group.producer) for c in group.consumers)
            norm_keep.update((n, needed) for n in group.norms)
            if g > 1:  # the inputs of the groups nobody reads are unread too
                computed = needed.view(g, -1)[:, 0]
                keep_in[group.producer] &= computed.repeat_interleave(producer.in_channels // g)

    for name, conv in switches.items():
        produced = keep_out[source[name]].nonzero().squeeze(1) if name in source else None
        backbone.set_submodule(name, _pruned_conv(conv, keep_in[name], keep_out.get(name), produced, pad_own_channels))

    for name, keep in keep_out.items():
        m = backbone.get_submodule(name)
        if isinstance(m, nn.Conv2d):  # a frozen conv left without switches (``exclude``)
            backbone.set_submodule(name, _slice_conv(m, keep.nonzero().squeeze(1)))
    for name, keep in norm_keep.items():
        backbone.set_submodule(name, _slice_norm(backbone.get_submodule(name), keep.nonzero().squeeze(1)))
    new.refresh()
    return new


def _padded_reads(conv: SwitchConv2d, keep_in: torch.Tensor, keep_out: torch.Tensor | None) -> torch.Tensor:
    """The input channels (a mask) a grouped ``conv`` reads when each group it keeps is padded to the largest fed
    count with its own first unfed channels."""
    g = conv.groups
    kept = torch.ones(g, dtype=torch.bool, device=keep_in.device) if keep_out is None else keep_out.view(g, -1).any(dim=1)
    fed = keep_in.view(g, -1)
    k = int(fed[kept].sum(dim=1).max()) if kept.any() else 0
    unfed_rank = torch.cumsum(~fed, dim=1)  # the unfed channels of each group, numbered from 1
    return ((fed | (~fed & (unfed_rank <= k - fed.sum(dim=1, keepdim=True)))) & kept[:, None]).flatten()


def _pruned_conv(conv: SwitchConv2d, keep_in: torch.Tensor, keep_out: torch.Tensor | None,
                 produced: torch.Tensor | None, pad_own_channels: bool = False) -> PrunedConv2d:  # fmt: skip
    """``conv`` over the input channels ``keep_in`` (a mask), outputting the channels ``keep_out`` (a mask, or
    ``None``: all), reading a tensor that holds the channels ``produced`` (indices, or ``None``: all); a grouped
    conv's padding slots read channel 0, or with ``pad_own_channels`` its groups' own channels where produced."""
    g, masks = conv.groups, conv.channel_masks()
    available = conv.in_channels if produced is None else len(produced)
    emitted = torch.arange(conv.out_channels, device=masks.device) if keep_out is None else keep_out.nonzero().squeeze(1)
    if g == 1:
        slots = keep_in.nonzero().squeeze(1)
        weight, slot_masks, groups = conv.weight[emitted][:, slots], masks[:, slots], 1
        positions = slots if produced is None else torch.searchsorted(produced, slots)
    else:  # per emitted group: the channels fed to it, padded to the largest group's count (module docstring)
        per_out, per_in = conv.out_channels // g, conv.in_channels // g
        kept_groups = (emitted[::per_out] // per_out).tolist()
        fed = [keep_in[j * per_in : (j + 1) * per_in].nonzero().squeeze(1) + j * per_in for j in kept_groups]
        k = max(len(c) for c in fed)
        if pad_own_channels:  # each group's slots: its fed channels and its first unfed ones, in channel order
            reads = _padded_reads(conv, keep_in, keep_out)
            own = [reads[j * per_in : (j + 1) * per_in].nonzero().squeeze(1) + j * per_in for j in kept_groups]
            if produced is None or all(torch.isin(c, produced).all() for c in own):
                fed = own  # (an unfed slot's kernel is zeroed below, and its switch is off in every domain)
        weight = conv.weight.new_zeros(len(kept_groups) * per_out, k, *conv.kernel_size)
        slot_masks = masks.new_zeros(len(masks), len(kept_groups), k)
        positions = torch.zeros(len(kept_groups), k, dtype=torch.long, device=masks.device)  # padding reads channel 0
        for n, (j, channels) in enumerate(zip(kept_groups, fed)):
            on = keep_in[channels].to(conv.weight.dtype).view(1, -1, 1, 1)
            weight[n * per_out : (n + 1) * per_out, : len(channels)] = conv.weight[j * per_out : (j + 1) * per_out, channels - j * per_in] * on
            slot_masks[:, n, : len(channels)] = masks[:, channels] & keep_in[channels]
            positions[n, : len(channels)] = channels if produced is None else torch.searchsorted(produced, channels)
        positions, slot_masks, groups = positions.flatten(), slot_masks.flatten(1), len(kept_groups)
    bias = None if conv.bias is None else conv.bias[emitted]
    in_index = None if torch.equal(positions, torch.arange(available, device=positions.device)) else positions
    return PrunedConv2d(weight, bias, conv, in_index, None if slot_masks.all() else slot_masks, available, groups)


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
    keep = model.keep_domain_models, pruned.keep_domain_models
    model.keep_domain_models = pruned.keep_domain_models = False  # the layers (not specialised models: serving.py)
    try:
        for d in range(model.num_domains) if domains is None else domains:
            a, b = model.eval()(x, d), pruned.eval()(x, d)
            diffs.append(float((a - b).abs().max()))  # NaN if any output is NaN
            scale = max(scale, float(a.abs().max()))
    finally:
        model.keep_domain_models, pruned.keep_domain_models = keep
    diff = math.nan if any(math.isnan(v) for v in diffs) else max(diffs)
    return Equivalence(diff, scale)
