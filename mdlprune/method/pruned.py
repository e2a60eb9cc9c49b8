"""The layer a pruned switch convolution becomes: a dense frozen kernel over the channels some domain uses
(ICIAP'23 §3.2, METHOD §6). :func:`mdlprune.prune` builds them; this module holds the layer alone.
"""

from __future__ import annotations

import torch
import torch.fx as fx
import torch.nn as nn

from .domain import DomainModule
from .switch import SwitchConv2d, conv2d, kernel_mask, select_channels

fx.wrap("select_channels")  # a torch.fx leaf here too (it branches on the memory format: specialize.py)

__all__ = ["PrunedConv2d", "keep_domain_kernels"]


class PrunedConv2d(DomainModule):
    """A dense frozen convolution over the channels some domain uses.

    ``weight`` has shape ``(out_kept, in_kept / groups, kh, kw)``. ``in_index`` (or ``None``) lists which of the
    ``incoming_channels`` channels of its input tensor it reads; ``domain_masks`` (or ``None`` where every
    domain uses every kept channel and no group is padded) is a ``(num_domains, in_kept)`` BoolTensor: the switches
    that still differ between domains.

    In an eval pass (no autograd) an ungrouped layer with per-domain masks convolves only the channels the domain
    uses: it gathers them and keeps those kernel slices per domain (:meth:`_domain_kernel`; :func:`keep_domain_kernels`
    turns the keeping off), so a domain's pass costs what that domain needs, not the union. Under autograd the mask
    is multiplied into the kernel instead.

    A grouped convolution keeps, in each group, the channels some domain feeds it; groups keep equally many: the
    kernel of a group that keeps fewer is padded with zeros over channel 0 of its input (or, pruned with
    ``pad_own_channels``, over the group's own unfed channels), masked off in every domain (a group no domain feeds
    is all padding, and outputs its bias). Scattering the fed groups into the output
    instead was slower than computing the padding, depthwise convolutions being memory-bound.
    """

    groups: int = 1  # (the default of models saved before grouped convolutions could be pruned)
    keep_domain_kernels: bool = True  # keep each domain's eval kernel between passes (see keep_domain_kernels)

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        conv: SwitchConv2d | nn.Conv2d,
        in_index: torch.Tensor | None = None,
        domain_masks: torch.Tensor | None = None,
        incoming_channels: int | None = None,
        groups: int = 1,
    ):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.kernel_size, self.padding_mode = conv.kernel_size, conv.padding_mode
        self._reversed_padding_repeated_twice = conv._reversed_padding_repeated_twice
        self.groups = groups
        self.source_channels = (conv.in_channels, conv.out_channels)
        self.incoming_channels = self.in_channels if incoming_channels is None else incoming_channels
        self.register_buffer("in_index", in_index)
        self.register_buffer("domain_masks", domain_masks)

    @property
    def in_channels(self) -> int:
        """The channels it reads (after its gather), padding slots of groups included."""
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, domain: int | None = None) -> torch.Tensor:
        if self.weight.shape[1] == 0:  # reads no channel
            return self._bias_only(x)
        index, w = self.in_index, self.weight
        if self.domain_masks is not None:
            index, w = self._domain_kernel(self.active_domain if domain is None else domain)
            if w is None:  # the domain reads none of the kept channels
                return self._bias_only(x)
        if index is not None:
            x = select_channels(x, index)
        return conv2d(self, x, w, self.bias)

    def _domain_kernel(self, d: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What domain ``d`` convolves: ``(input gather or None, kernel)``.

        Under autograd, compilers and exporters: the kept channels with the domain's mask multiplied into the kernel.
        Otherwise (an eval forward pass) the domain's own channels alone: an ungrouped layer gathers just the
        channels ``d`` switches on and convolves them with those kernel slices (``(None, None)`` if there are none),
        so it computes only what the domain needs; a grouped one keeps the masked kernel. Either is kept per domain
        until the kernel or the masks change (moved, cast, edited or replaced); not at all for a kernel or masks made
        under ``torch.inference_mode``, whose in-place edits torch does not count, nor after
        :func:`keep_domain_kernels` ``(model, False)``."""
        w, masks = self.weight, self.domain_masks
        if ((torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling()
                or torch.compiler.is_exporting() or torch.jit.is_tracing()):  # fmt: skip
            return self.in_index, w * kernel_mask(masks[d].to(w.dtype), self.groups, w.shape[0])
        if not self.keep_domain_kernels or w.is_inference() or masks.is_inference():  # (under inference mode, in-place
            return self._kernel_for(d)  # edits are not counted): computed per call, nothing kept
        identity = (w.data_ptr(), w._version, w.dtype, w.device, masks.data_ptr(), masks._version)
        cache = self.__dict__.get("_domain_cache")
        if cache is None or cache[0] != identity:  # a new kernel or new masks: drop every domain's kernel
            cache = self.__dict__["_domain_cache"] = (identity, {})
        entry = cache[1].get(d)
        if entry is None or (not torch.is_inference_mode_enabled()
                             and any(t is not None and t.is_inference() for t in entry)):  # fmt: skip
            entry = cache[1][d] = self._kernel_for(d)
        return entry

    def _kernel_for(self, d: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Domain ``d``'s ``(input gather or None, kernel)`` in an eval pass, computed now (:meth:`_domain_kernel`)."""
        w, on = self.weight, self.domain_masks[d]
        if on.all():
            return self.in_index, w
        if self.groups > 1:
            return self.in_index, w * kernel_mask(on.to(w.dtype), self.groups, w.shape[0])
        if not on.any():
            return None, None
        keep = on.nonzero().squeeze(1)
        return keep if self.in_index is None else self.in_index[keep], w[:, keep].contiguous()

    def __getstate__(self) -> dict:  # the cache is not part of the model: neither saved nor copied
        state = dict(super().__getstate__())
        state.pop("_domain_cache", None)
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
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.in_index is not None:
            s += ", gathers its input"
        if self.domain_masks is not None:
            s += f", per-domain masks {tuple(self.domain_masks.shape)}"
        return s


def keep_domain_kernels(model: nn.Module, keep: bool) -> nn.Module:
    """Whether the pruned layers of ``model`` keep each domain's eval kernel between passes (what :func:`prune`
    builds) or compute it on every pass. Keeping is faster; what it holds once every domain has run can be several
    times the pruned model itself (on the mini backbone 1.76 × the backbone's floats, against the pruned model's
    0.56: benchmarks/RESULTS.md), so a device short of memory turns it off. The choice is an attribute of the
    layers, saved with the model (:func:`~mdlprune.save_model`), not part of its ``state_dict``. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, PrunedConv2d):
            m.keep_domain_kernels = bool(keep)
            if not keep:
                m.__dict__.pop("_domain_cache", None)
    return model
