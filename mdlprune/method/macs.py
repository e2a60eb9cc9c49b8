"""MACs, counted with THOP (the papers' tool), in two kinds (METHOD §7).

* **needed** (:func:`needed_macs`): every convolution reads only the input channels the domain switches on:
  what BA² and the papers report as FLOP, and every MACs column of our tables.
* **executed** (:func:`executed_macs`): what the kernels compute in an eval pass: a switch model the dense
  backbone; a pruned model, in each ungrouped layer, the domain's own channels (so executed = needed there), in
  each grouped layer the union of its domains' channels with the domain's mask multiplied in.

THOP looks rules up by exact module type, so our layers register theirs. A DomainBatchNorm2d or DomainHeads needs
no rule: THOP descends into their children, of which only the active domain's runs. We profile a deep copy: THOP
leaves buffers and hooks on the modules it measures.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import thop
import torch
import torch.nn as nn

from .multidomain import MultiDomainNet
from .pruned import PrunedConv2d
from .specialize import specialize
from .switch import SwitchConv2d

__all__ = ["count_macs", "needed_macs", "executed_macs", "relative_macs", "switch_costs"]


def _conv_macs(out: torch.Tensor, filters: int, reads: int, kernel_size: tuple[int, int]) -> int:
    """THOP's convolution rule: each of ``filters`` computed output channels reads ``reads`` input channels
    through a ``kh × kw`` kernel at every position of ``out``."""
    return out[0, 0].numel() * out.shape[0] * filters * reads * kernel_size[0] * kernel_size[1]


def _thop_rules(mask_aware: bool) -> dict:
    # Each filter of group j reads the channels of group j: O/g filters per group, so Σ_j (O/g)·|channels on in
    # j| = (O/g) · (channels on) multiply-accumulates per position.
    def switch_rule(m: SwitchConv2d, inputs, out):
        reads = int(m.channel_mask(m.active_domain).sum()) if mask_aware else m.in_channels
        m.total_ops += _conv_macs(out, m.out_channels // m.groups, reads, m.kernel_size)

    def pruned_rule(m: PrunedConv2d, inputs, out):
        per_group, reads = m.weight.shape[0] // m.groups, m.in_channels
        # Padding slots of groups are off in every domain; an eval forward pass of an ungrouped layer convolves the
        # domain's channels alone (PrunedConv2d._domain_kernel), so there executed = needed
        if m.domain_masks is not None and (mask_aware or m.groups == 1):
            reads = int(m.domain_masks[m.active_domain].sum())
        m.total_ops += _conv_macs(out, per_group, reads, m.kernel_size)

    return {SwitchConv2d: switch_rule, PrunedConv2d: pruned_rule}


def count_macs(
    model: nn.Module,
    input_size: Sequence[int],
    domain: int | str = 0,
    mask_aware: bool = True,
    by_layer: bool = False,
) -> int | tuple[int, dict[str, int]]:
    """Multiply-accumulates of one forward pass, counted by THOP: :func:`needed_macs` or :func:`executed_macs`.

    Args:
        model: a :class:`MultiDomainNet` (switched or pruned) or a plain single-domain CNN.
        input_size: ``(C, H, W)`` for one image, or ``(N, C, H, W)``.
        domain: the domain to run (ignored for a plain CNN).
        mask_aware: ``True``: the MACs ``domain`` *needs* (every convolution reads only the input channels the
            domain switches on). ``False``: the MACs the model *executes* in an eval pass (:func:`executed_macs`).
        by_layer: also return ``{module name: MACs}`` for the convolutions and linear layers.

    The model is not modified: THOP runs on a deep copy, in eval mode, without gradients.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        size = (1, *size)
    if len(size) != 4:
        raise ValueError(f"input_size must be (C, H, W) or (N, C, H, W), got {tuple(input_size)}")
    probe = copy.deepcopy(model).eval()
    if isinstance(probe, MultiDomainNet) and probe.keep_domain_models:  # (mdlprune.keep_domain_models)
        if not mask_aware and not by_layer:  # what an eval pass executes: the domain's specialised model
            return count_macs(specialize(probe, domain), input_size)
        probe.keep_domain_models = False  # what the domain needs, and per-layer counts: counted on its layers
    device = next((t.device for t in probe.parameters()), torch.device("cpu"))
    x = torch.zeros(size, device=device)
    inputs = (x, domain) if isinstance(probe, MultiDomainNet) else (x,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        total, _, tree = thop.profile(
            probe, inputs=inputs, custom_ops=_thop_rules(mask_aware), verbose=False, ret_layer_info=True
        )
    total = int(round(total))
    if not by_layer:
        return total
    convs = {}

    def walk(prefix: str, mod: nn.Module, node: dict):
        for child_name, (ops, _params, sub) in node.items():
            name = f"{prefix}.{child_name}" if prefix else child_name
            child = mod.get_submodule(child_name)
            if isinstance(child, (nn.Conv2d, SwitchConv2d, PrunedConv2d)) or isinstance(child, nn.Linear) and ops:
                convs[name.removeprefix("backbone.")] = int(round(ops))  # (other domains' linear heads did not run)
            walk(name, child, sub)

    walk("", probe, tree)
    return total, convs


def needed_macs(model: nn.Module, input_size: Sequence[int], domain: int | str = 0) -> int:
    """The MACs ``domain`` needs: every convolution reads only the input channels the domain switches on.

    What BA² and the papers report (their "FLOP" column, :func:`relative_macs`), for a switch model and its
    pruned copy alike (the pruned copy's can be lower: pruning dropped filters no domain reads). A device running
    that domain alone executes at most this (:func:`mdlprune.specialize`, which also drops the filters nobody in
    the domain reads), but for the zero padding of grouped convolutions whose groups keep unequal counts."""
    return count_macs(model, input_size, domain, mask_aware=True)


def executed_macs(model: nn.Module, input_size: Sequence[int], domain: int | str = 0) -> int:
    """The MACs the model computes when it runs ``domain`` in an eval pass, masked channels included.

    A switch model executes the dense backbone's convolutions (it multiplies masks into dense kernels). A pruned
    model convolves each ungrouped layer over the domain's own channels (:class:`~mdlprune.PrunedConv2d` slices
    them), and each grouped layer over the union of its domains' channels, the domain's mask multiplied in. With
    :func:`~mdlprune.keep_domain_models` on, an eval pass runs the domain's specialised model: its MACs."""
    return count_macs(model, input_size, domain, mask_aware=False)


def relative_macs(
    model: MultiDomainNet, backbone: nn.Module, input_size: Sequence[int], domains: Sequence[int] | None = None
) -> float:
    """Mean over ``domains`` (default: all) of the MACs each domain needs (:func:`needed_macs`), relative to the
    single-domain ``backbone``'s: the papers' "FLOP" column."""
    base = count_macs(backbone, input_size)
    domains = range(model.num_domains) if domains is None else domains
    return sum(count_macs(model, input_size, d) for d in domains) / (len(domains) * base)


def switch_costs(model: MultiDomainNet, kind: str = "params", input_size: Sequence[int] | None = None) -> torch.Tensor:
    """Per-switch costs ``(M,)``, in the order of :meth:`MultiDomainNet.binary_masks`, for a cost-weighted
    budget (METHOD §3): the parameters (``O/g·kh·kw``) or the MACs (``O/g·kh·kw·H_out·W_out``, which needs
    ``input_size``) of the kernel slice each switch turns on or off; ``"switches"``: 1 each (the papers' θ̄)."""
    layers = model.switch_layers()
    if kind == "switches":
        return torch.ones(sum(m.in_channels for _, m in layers))
    if kind == "params":
        costs = [torch.full((m.in_channels,), float(m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]))
                 for _, m in layers]  # (a grouped conv's channel reaches the O/g filters of its group)
        return torch.cat(costs)
    if kind != "macs":
        raise ValueError(f"switch costs are 'switches', 'params' or 'macs', got {kind!r}")
    if input_size is None:
        raise ValueError("MAC-weighted switch costs need the input_size (C, H, W) to know each layer's output size")
    _, per_layer = count_macs(model, input_size, mask_aware=False, by_layer=True)
    return torch.cat([torch.full((m.in_channels,), per_layer[n] / m.in_channels) for n, m in layers])
