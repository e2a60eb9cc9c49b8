"""Parameter memory, S-score, S_O and S_P (METHOD §7); MACs are counted in :mod:`mdlprune.method.macs`.

* Parameter memory (the papers' "Params"): the bits needed to store the model for *all* its domains,
  classifier heads excluded, floats at 32 bits, switches and masks at 1 bit.
* The S-score of the Visual Decathlon (Rebuffi et al., 2017; eq. 6 of ICIAP'23), with S_O = S / relative
  MACs and S_P = S / relative Params.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch.nn as nn

from .domain import DomainHeads
from .multidomain import MultiDomainNet
from .pruned import PrunedConv2d
from .switch import SwitchConv2d

__all__ = [
    "param_bits",
    "relative_param_bits",
    "s_score",
    "s_score_terms",
    "s_o",
    "s_p",
    "DECATHLON_BASELINE",
]


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

