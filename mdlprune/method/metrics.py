"""Cost and quality metrics of METHOD §7: MACs (THOP), parameter memory, S-score, S_O and S_P.

* MACs are counted with THOP, the papers' tool. THOP looks rules up by exact module type, so our layers
  register theirs: a switch convolution counts only the input channels the domain uses (what BA² reports
  as its FLOP), a pruned convolution what its dense kernel computes. A DomainBatchNorm2d or DomainHeads
  needs no rule: THOP descends into their children, of which only the active domain's runs. We profile a
  deep copy: THOP leaves buffers and hooks on the modules it measures.
* Parameter memory (the papers' "Params"): the bits needed to store the model for *all* its domains,
  classifier heads excluded, floats at 32 bits, switches and masks at 1 bit.
* The S-score of the Visual Decathlon (Rebuffi et al., 2017; eq. 6 of ICIAP'23), with S_O = S / relative
  MACs and S_P = S / relative Params.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence

import thop
import torch
import torch.nn as nn

from .domain import DomainHeads
from .multidomain import MultiDomainNet
from .prune import PrunedConv2d
from .switch import SwitchConv2d

__all__ = [
    "count_macs",
    "relative_macs",
    "param_bits",
    "relative_param_bits",
    "switch_costs",
    "s_score",
    "s_score_terms",
    "s_o",
    "s_p",
    "DECATHLON_BASELINE",
]


# -- MACs ----------------------------------------------------------------------------------------------
def _conv_macs(out: torch.Tensor, in_channels: int, kernel_size: tuple[int, int]) -> int:
    """THOP's convolution rule: every output element reads ``in_channels × kh × kw`` weights."""
    return out.numel() * in_channels * kernel_size[0] * kernel_size[1]


def _thop_rules(mask_aware: bool) -> dict:
    def switch_rule(m: SwitchConv2d, inputs, out):
        cin = int(m.channel_mask(m.active_domain).sum()) if mask_aware else m.in_channels
        m.total_ops += _conv_macs(out, cin, m.kernel_size)

    def pruned_rule(m: PrunedConv2d, inputs, out):
        cin = m.in_channels
        if mask_aware and m.domain_masks is not None:
            cin = int(m.domain_masks[m.active_domain].sum())
        m.total_ops += _conv_macs(out, cin, m.kernel_size)

    return {SwitchConv2d: switch_rule, PrunedConv2d: pruned_rule}


def count_macs(
    model: nn.Module,
    input_size: Sequence[int],
    domain: int | str = 0,
    mask_aware: bool = True,
    by_layer: bool = False,
) -> int | tuple[int, dict[str, int]]:
    """Multiply-accumulates of one forward pass, counted by THOP.

    Args:
        model: a :class:`MultiDomainNet` (switched or pruned) or a plain single-domain CNN.
        input_size: ``(C, H, W)`` for one image, or ``(N, C, H, W)``.
        domain: the domain to run (ignored for a plain CNN).
        mask_aware: count only the input channels ``domain`` switches on (switch layers, and pruned layers
            that kept per-domain masks). ``False`` counts what the dense kernels compute.
        by_layer: also return ``{module name: MACs}`` for the convolutions.

    The model is not modified: THOP runs on a deep copy, in eval mode, without gradients.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        size = (1, *size)
    if len(size) != 4:
        raise ValueError(f"input_size must be (C, H, W) or (N, C, H, W), got {tuple(input_size)}")
    probe = copy.deepcopy(model).eval()
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
            if isinstance(child, (nn.Conv2d, SwitchConv2d, PrunedConv2d)):
                convs[name.removeprefix("backbone.")] = int(round(ops))
            walk(name, child, sub)

    walk("", probe, tree)
    return total, convs


def relative_macs(
    model: MultiDomainNet, backbone: nn.Module, input_size: Sequence[int], domains: Sequence[int] | None = None
) -> float:
    """Mean over ``domains`` (default: all) of the model's mask-aware MACs, relative to the single-domain
    ``backbone``'s (the papers' "FLOP" column)."""
    base = count_macs(backbone, input_size)
    domains = range(model.num_domains) if domains is None else domains
    return sum(count_macs(model, input_size, d) for d in domains) / (len(domains) * base)


def switch_costs(model: MultiDomainNet, kind: str = "params", input_size: Sequence[int] | None = None) -> torch.Tensor:
    """Per-switch costs ``(M,)``, in the order of :meth:`MultiDomainNet.binary_masks`, for a cost-weighted
    budget (METHOD §3): the parameters (``O·kh·kw``) or the MACs (``O·kh·kw·H_out·W_out``, which needs
    ``input_size``) of the kernel slice each switch turns on or off."""
    layers = model.switch_layers()
    if kind == "params":
        costs = [torch.full((m.in_channels,), float(m.out_channels * m.kernel_size[0] * m.kernel_size[1])) for _, m in layers]
        return torch.cat(costs)
    if kind != "macs":
        raise ValueError(f"switch costs are 'params' or 'macs', got {kind!r}")
    if input_size is None:
        raise ValueError("MAC-weighted switch costs need the input_size (C, H, W) to know each layer's output size")
    _, per_layer = count_macs(model, input_size, mask_aware=False, by_layer=True)
    return torch.cat([torch.full((m.in_channels,), per_layer[n] / m.in_channels) for n, m in layers])


# -- parameter memory ------------------------------------------------------------------------------------
def param_bits(model: nn.Module, head: str | None = "fc") -> int:
    """Bits to store ``model`` for all its domains, classifier heads excluded (METHOD §7).

    Floats count 32 bits: kernels, biases, and for every domain the BatchNorm affine parameters and running
    statistics (needed at inference). Switches and the per-domain masks a pruned conv keeps count 1 bit
    each; so does a pruned conv's input gather (it is a bitmask over the channels it receives). Integer
    counters (``num_batches_tracked``) are bookkeeping, not weights, and are not counted.

    ``head`` names the classifier of a plain single-domain CNN (ignored for a :class:`MultiDomainNet`,
    whose :class:`~mdlprune.DomainHeads` are always excluded).
    """
    skip: set[int] = set()
    if isinstance(model, MultiDomainNet):
        for m in model.modules():
            if isinstance(m, DomainHeads):
                skip.update(id(t) for t in m.parameters())
    elif head is not None:
        try:
            skip.update(id(t) for t in model.get_submodule(head).parameters())
        except AttributeError:
            pass
    bits = 0
    for m in model.modules():
        for name, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            if t is None or id(t) in skip or name == "num_batches_tracked":
                continue
            if isinstance(m, SwitchConv2d) and name == "switches":
                bits += t.numel()
            elif isinstance(m, PrunedConv2d) and name == "domain_masks":
                bits += t.numel()
            elif isinstance(m, PrunedConv2d) and name == "in_index":
                continue  # counted below as a bitmask over the incoming channels
            elif t.is_floating_point():
                bits += 32 * t.numel()
        if isinstance(m, PrunedConv2d) and m.in_index is not None:
            bits += m.incoming_channels
    return bits


def relative_param_bits(model: nn.Module, backbone: nn.Module, head: str = "fc") -> float:
    """``param_bits(model) / param_bits(backbone)``: the papers' "Params" column (1.0 = one backbone)."""
    return param_bits(model, head) / param_bits(backbone, head)


# -- S-score ---------------------------------------------------------------------------------------------
#: Finetune accuracies (%) of the Visual Decathlon baseline (METHOD §7), E_max = 2 × their error.
DECATHLON_BASELINE = {
    "imagenet12": 59.87,
    "aircraft": 60.34,
    "cifar100": 82.12,
    "daimlerpedcls": 92.82,
    "dtd": 55.53,
    "gtsrb": 97.53,
    "vgg-flowers": 81.41,
    "omniglot": 87.69,
    "svhn": 96.55,
    "ucf101": 51.20,
}


def _as_list(values: Sequence[float] | Mapping[str, float]) -> tuple[list[str] | None, list[float]]:
    if isinstance(values, Mapping):
        return list(values), [float(v) for v in values.values()]
    return None, [float(v) for v in values]


def s_score_terms(
    accuracies: Sequence[float] | Mapping[str, float], baseline_accuracies: Sequence[float] | Mapping[str, float]
) -> list[float]:
    """Per-domain S-score terms 1000 · (max(0, E_max − E) / E_max)², with errors E = 100 − accuracy and
    E_max = 2 × the baseline's error (Rebuffi et al., 2017). Accuracies in percent; dicts are matched by
    domain name, sequences by position."""
    names, acc = _as_list(accuracies)
    base_names, base = _as_list(baseline_accuracies)
    if names is not None and base_names is not None:
        missing = [n for n in names if n not in baseline_accuracies]
        if missing:
            raise ValueError(f"no baseline accuracy for domains {missing}: the baseline has {base_names}")
        base = [float(baseline_accuracies[n]) for n in names]
    elif len(acc) != len(base):
        raise ValueError(f"{len(acc)} accuracies but {len(base)} baseline accuracies: give one per domain")
    terms = []
    for a, b in zip(acc, base):
        for v, what in ((a, "accuracy"), (b, "baseline accuracy")):
            if not 0.0 <= v <= 100.0 or math.isnan(v):
                raise ValueError(f"{what} {v} is not a percentage in [0, 100]")
        e_max = 2.0 * (100.0 - b)
        if e_max == 0:
            raise ValueError("a baseline accuracy of 100% leaves no room for the S-score (E_max = 0)")
        terms.append(1000.0 * (max(0.0, e_max - (100.0 - a)) / e_max) ** 2)
    return terms


def s_score(
    accuracies: Sequence[float] | Mapping[str, float], baseline_accuracies: Sequence[float] | Mapping[str, float]
) -> float:
    """The S-score: Σ_d of :func:`s_score_terms` (at most 1000 per domain; the baseline scores 250 each)."""
    return sum(s_score_terms(accuracies, baseline_accuracies))


def s_o(score: float, rel_macs: float) -> float:
    """S_O: the S-score per operation, S / relative MACs."""
    return score / rel_macs


def s_p(score: float, rel_params: float) -> float:
    """S_P: the S-score per parameter, S / relative Params."""
    return score / rel_params

