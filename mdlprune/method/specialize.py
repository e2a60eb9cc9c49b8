"""One domain's model as a plain ``torch.nn`` network: what a device that serves a single domain runs (METHOD §6).

The pruned multi-domain model keeps the *union* of its domains' channels and multiplies each domain's mask into
the kernels where the domains differ. A device that serves one domain ``d`` needs less:

1. **Only domain d's channels.** :func:`specialize` keeps domain ``d``'s switches, BatchNorms and head alone, and
   prunes that one-domain model with :func:`~mdlprune.prune`: every input channel ``d`` switches off goes, and,
   where the dependency analysis allows, so do the producer's filter and BatchNorm channels. The model executes
   at most the MACs ``d`` *needs* (:func:`~mdlprune.needed_macs`), usually fewer; the one excess is the zero
   padding of a grouped convolution whose groups keep unequal channel counts (and, with ``pad_own_channels``, the
   filters that compute the padding channels). What stays: every channel of a
   residual stream (the additions read them all), and one filter (group) of a producer nobody reads (a
   convolution that reads no channel becomes a zero kernel over one channel, which outputs its bias).
2. **Plain layers.** Per-domain BatchNorms and heads become ``nn.BatchNorm2d`` and ``nn.Linear`` (or 1×1
   ``nn.Conv2d`` heads); a pruned convolution becomes an ``nn.Conv2d``, preceded by a :class:`ChannelSelect` where
   it reads a subset of its input's channels (a residual stream, whose width cannot shrink because additions read
   every channel; the channels of a grouped convolution's groups).
3. **BatchNorm folded** into the convolution before it (eval mode): ``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β`` with
   ``σ = √(var + ε)`` per output channel (:func:`fold_batchnorms`).

Invariant (tested): ``specialize(model, d)(x)`` equals ``model(x, d)`` in eval mode up to float rounding, for a
trained (switch) model and for its pruned copy alike. From the trained model the result is smallest: a pruned
grouped convolution is rebuilt for one domain behind a gather, which the dependency analysis cannot see through, so
the filters that feed it stay (MobileNetV2, 32 px, random β = 0.5 masks: 2.5 M MACs from the pruned model, 1.8 M
from the trained). A model pruned with ``pad_own_channels`` has no such gather before its depthwise layers.
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections import Counter

import torch
import torch.fx as fx
import torch.nn as nn

from .domain import DomainBatchNorm2d, DomainHeads, DomainModule
from .multidomain import MultiDomainNet
from .prune import prune
from .pruned import PrunedConv2d
from .switch import SwitchConv2d, kernel_mask, select_channels

__all__ = ["ChannelSelect", "specialize", "fold_batchnorms"]


# a leaf of torch.fx traces (pruning's dependency analysis traces through ChannelSelect): it branches on the memory
# format, which a trace cannot see; as an unknown function it is read as "reads every channel"
fx.wrap("select_channels")


class ChannelSelect(nn.Module):
    """``x[:, index]``: the channels of a residual stream that the next convolution reads."""

    def __init__(self, index: torch.Tensor, incoming_channels: int):
        super().__init__()
        self.incoming_channels = incoming_channels
        self.register_buffer("index", index.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_channels(x, self.index)

    def extra_repr(self) -> str:
        return f"{len(self.index)} channels gathered from {self.incoming_channels}"


@torch.no_grad()
def specialize(model: MultiDomainNet, domain: int | str, fold_batchnorm: bool = True,
               pad_own_channels: bool = False, channel_multiple: int = 1) -> nn.Module:  # fmt: skip
    """A plain ``torch.nn`` copy of ``model``'s backbone that computes ``model(x, domain)`` in eval mode.

    ``model``: a trained :class:`~mdlprune.MultiDomainNet` (switches) or its :func:`~mdlprune.prune` d copy;
    ``domain``: an index or a name. The result is in eval mode, reads ``forward(x)`` only, holds the channels that
    ``domain`` uses (and the residual streams whole: module docstring), and is frozen (``requires_grad=False``:
    it is for inference). ``pad_own_channels``: as in :func:`~mdlprune.prune` (fewer gathers before grouped
    convolutions, for a few more filters). ``channel_multiple``: round the number of channels each ungrouped
    convolution reads up to a multiple of this (:func:`_round_reads`): the same function, more MACs, channel counts
    a runtime's fast kernels accept (ONNX Runtime 1.32 on an AVX-512 CPU: 4; GPU tensor cores: 8; measure on the
    device).
    ``model`` is not modified.
    """
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"specialize expects a MultiDomainNet (trained or pruned), got {type(model).__name__}")
    try:  # any integer type (numpy, 0-d tensors), not a float or a bool
        multiple = operator.index(channel_multiple) if not isinstance(channel_multiple, bool) else 0
    except TypeError:
        multiple = 0
    if multiple < 1:
        raise ValueError(f"channel_multiple must be a whole number ≥ 1 (1: no rounding), got {channel_multiple!r}")
    d = model.domain_index(domain)
    one = _one_domain(model, d)
    if multiple > 1:
        _round_reads(one, multiple)
    plain = _merge_gathers(_plain(prune(one, pad_own_channels=pad_own_channels).backbone)).eval().requires_grad_(False)
    return fold_batchnorms(plain) if fold_batchnorm else plain


def _one_domain(model: MultiDomainNet, d: int) -> MultiDomainNet:
    """A copy of ``model`` with domain ``d``'s layers alone, every pruned convolution back as switches."""
    new = copy.deepcopy(model).eval()
    new.keep_domain_models = False  # (its passes run the layers)
    for name, m in list(new.backbone.named_modules()):
        if isinstance(m, SwitchConv2d):
            m.switches = nn.Parameter(m.switches[d : d + 1].clone())
        elif isinstance(m, PrunedConv2d):
            new.backbone.set_submodule(name, _as_switches(m, d))
        elif isinstance(m, DomainBatchNorm2d):
            m.bns = nn.ModuleList([m.bns[d]])
        elif isinstance(m, DomainHeads):
            m.heads = nn.ModuleList([m.heads[d]])
        elif isinstance(m, DomainModule):
            raise TypeError(f"{name}: specialize does not know the per-domain layer {type(m).__name__}")
    new.domain_names = (model.domain_names[d],)
    new.refresh()
    return new


@torch.no_grad()
def _round_reads(one: MultiDomainNet, multiple: int) -> None:
    """In every ungrouped switch convolution of the one-domain model ``one`` that reads some channel, switch on the
    fewest more input channels (the first ones that are off) that make the number it reads a multiple of ``multiple``
    (or all of them), and zero their kernel slices, so the layer computes the same function (in place). Pruning then
    keeps them: a residual stream's gather takes them, an inner producer read only by ungrouped convolutions
    computes them (so its output count rounds too). A layer of a pruned model rounds within the channels pruning
    kept (the union of the domains'); from the trained model it can reach the full width. Why: runtimes with
    blocked layouts take a slower path for some channel counts (ONNX Runtime 1.32's NCHWc kernels on an AVX-512
    CPU: an input count neither below 16 nor a multiple of 4; benchmarks/RESULTS.md)."""
    for m in one.backbone.modules():
        if not isinstance(m, SwitchConv2d) or m.groups != 1:
            continue
        on = m.channel_mask(0)
        n = int(on.sum())
        extra = (~on).nonzero().flatten()[: min(len(on), -(-n // multiple) * multiple) - n]
        if n and len(extra):
            m.weight[:, extra] = 0
            m.switches[0, extra] = m.threshold + 1.0


@torch.no_grad()
def _as_switches(p: PrunedConv2d, d: int) -> nn.Module:
    """A switch convolution that computes what ``p`` computes for domain ``d``, its switches on exactly where
    ``p`` reads for ``d``: over all ``p.incoming_channels`` (kept kernels in place, zeros elsewhere), or, for a
    grouped ``p``, over the channels its groups read (padding included), gathered by a :class:`ChannelSelect`."""
    w, dev = p.weight, p.weight.device
    read = p.in_index if p.in_index is not None else torch.arange(p.in_channels, device=dev)
    on = torch.ones(len(read), dtype=torch.bool, device=dev) if p.domain_masks is None else p.domain_masks[d]
    groups = 1 if w.shape[1] == 0 else p.groups  # (a grouped layer that reads nothing: a zero ungrouped kernel)
    if groups == 1:
        in_channels, kernel = p.incoming_channels, w.new_zeros(p.out_channels, p.incoming_channels, *p.kernel_size)
        if w.shape[1]:
            kernel[:, read] = w
        switches = torch.zeros(in_channels, dtype=torch.bool, device=dev)
        switches[read] = on
    else:
        in_channels, kernel, switches = p.in_channels, w, on
    conv = nn.Conv2d(in_channels, p.out_channels, p.kernel_size, p.stride, p.padding, p.dilation, groups,
                     bias=p.bias is not None, padding_mode=p.padding_mode, device=dev, dtype=w.dtype)  # fmt: skip
    conv.weight.copy_(kernel)
    if p.bias is not None:
        conv.bias.copy_(p.bias)
    s = SwitchConv2d(conv, num_domains=1)
    s.switches.copy_(torch.where(switches, 1.0, -1.0).to(s.switches).view(1, -1))
    if groups == 1 or torch.equal(read, torch.arange(p.incoming_channels, device=dev)):
        return s
    return nn.Sequential(ChannelSelect(read, p.incoming_channels), s)


def _plain(backbone: nn.Module) -> nn.Module:
    """Replace every one-domain layer of a pruned backbone by its ``torch.nn`` equivalent (in place)."""
    for name, m in list(backbone.named_modules()):
        if isinstance(m, PrunedConv2d):
            backbone.set_submodule(name, _plain_conv(m))
        elif isinstance(m, DomainBatchNorm2d):
            backbone.set_submodule(name, m.bns[0])
        elif isinstance(m, DomainHeads):
            backbone.set_submodule(name, m.heads[0])
    return backbone


def _merge_gathers(backbone: nn.Module) -> nn.Module:
    """One gather where two follow each other (the channels a grouped layer reads, then pruning's own selection of
    them): ``ChannelSelect(a)`` then ``ChannelSelect(b)`` is ``ChannelSelect(a[b])``, exactly, without the
    intermediate tensor (in place; repeated until no two follow each other)."""
    def pair(m: nn.Module) -> bool:
        return (isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], ChannelSelect)
                and isinstance(m[1], nn.Sequential) and len(m[1]) == 2 and isinstance(m[1][0], ChannelSelect))  # fmt: skip

    while name := next((n for n, m in backbone.named_modules() if n and pair(m)), None):
        (a, (b, conv)) = backbone.get_submodule(name)
        backbone.set_submodule(name, nn.Sequential(ChannelSelect(a.index[b.index], a.incoming_channels), conv))
    return backbone


def _plain_conv(p: PrunedConv2d) -> nn.Module:
    w, index, groups = p.weight, p.in_index, p.groups
    if p.domain_masks is not None:  # one domain left: only padding slots of groups are off, over zero kernels
        w = w * kernel_mask(p.domain_masks[0].to(w.dtype), groups, w.shape[0])
    if w.shape[1] == 0:  # reads nothing: a zero kernel over one channel outputs the bias, with the same geometry
        w = w.new_zeros(p.out_channels, 1, *p.kernel_size)
        index, groups = torch.zeros(1, dtype=torch.long, device=w.device), 1
    conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], p.kernel_size, p.stride, p.padding, p.dilation, groups,
                     bias=p.bias is not None, padding_mode=p.padding_mode, device=w.device, dtype=w.dtype)  # fmt: skip
    conv.weight.copy_(w)
    if p.bias is not None:
        conv.bias.copy_(p.bias)
    conv.requires_grad_(False)
    return conv if index is None else nn.Sequential(ChannelSelect(index, p.incoming_channels), conv)


class _LeafConvs(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.BatchNorm2d, ChannelSelect)) or super().is_leaf_module(m, qualname)


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``nn.BatchNorm2d`` that reads only a convolution's output (and is that output's
    only reader) into the convolution, and replace it by ``nn.Identity`` (in place; returns ``model``).

    Found by a ``torch.fx`` trace; a model that does not trace is returned unchanged, with a warning. The folded
    convolutions are frozen (``requires_grad=False``)."""
    try:
        graph = _LeafConvs().trace(model)
    except Exception as e:  # control flow on tensor values, unsupported Python
        warnings.warn(f"fold_batchnorms: {type(model).__name__} does not trace with torch.fx ({type(e).__name__}: "
                      f"{e}); its BatchNorms stay as they are")  # fmt: skip
        return model
    modules = dict(model.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if type(bn) is not nn.BatchNorm2d or bn.training or not bn.track_running_stats or calls[node.target] != 1:
            continue
        src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        conv = modules.get(src.target) if isinstance(src, fx.Node) and src.op == "call_module" else None
        if type(conv) is not nn.Conv2d or calls[src.target] != 1 or len(src.users) != 1:
            continue
        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                           conv.dilation, conv.groups, True, conv.padding_mode,
                           device=conv.weight.device, dtype=conv.weight.dtype)  # fmt: skip
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_((bias - bn.running_mean) * scale + shift)
        folded.requires_grad_(False).eval()
        model.set_submodule(src.target, folded)
        model.set_submodule(node.target, nn.Identity())
    return model
