"""From a pretrained single-domain CNN to a multi-domain model Ψ_d(x; θ₀, θ_d) (eq. 1, METHOD §1-2).

:func:`to_multidomain` keeps the pretrained weights θ₀ frozen and adds the domain-specific parameters θ_d. It
converts what it understands exactly and refuses, naming the layers, what it cannot convert exactly — never a
model that computes something else, or that pruning would later change:

* ``nn.Conv2d`` (the exact type; grouped and depthwise ones too) gets switches; ``nn.BatchNorm2d`` (exact type)
  becomes per domain.
* A subclass of either (its own ``forward``: a weight-standardised conv, a custom norm) is refused: wrapping it
  would drop its ``forward``. ``exclude=[name]`` keeps such a layer frozen and shared: pruning never rebuilds
  it, and training leaves its statistics alone.
* A layer registered under two names (a shared module) is refused: one name would get switches, the other not.
* A conv whose weight the model reads outside the conv's own ``forward`` (``F.conv2d(x, self.conv.weight)``,
  found in the ``torch.fx`` trace) is refused: the switches would never reach that read.
* The input check of :class:`MultiDomainNet` uses the conv that reads the image (found in the trace; the first
  registered conv when the model does not trace).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .dependencies import trace
from .domain import DomainBatchNorm2d, DomainHeads
from .multidomain import MultiDomainNet
from .switch import SwitchConv2d

__all__ = ["to_multidomain", "find_head"]


def to_multidomain(
    backbone: nn.Module,
    num_classes: Sequence[int] | Mapping[str, int],
    head: str | None = None,
    *,
    domain_names: Sequence[str] | None = None,
    exclude: Iterable[str] = (),
    switch_init: float = 1e-3,
) -> MultiDomainNet:
    """Turn a pretrained single-domain CNN into a multi-domain model (see the module docstring).

    The backbone is deep-copied (the argument is left untouched); every ``nn.Conv2d`` becomes a
    :class:`SwitchConv2d` with switches at ``switch_init``, every ``nn.BatchNorm2d`` a :class:`DomainBatchNorm2d`
    (each domain starting from the pretrained statistics), the head :class:`DomainHeads` with ``num_classes[d]``
    outputs for domain ``d``; every other parameter is frozen.

    Args:
        backbone: a torchvision-style CNN (e.g. ``torchvision.models.resnet18()``, or
            :func:`mdlprune.method.backbones.resnet26`).
        num_classes: classes per domain, a sequence (one entry per domain) or a ``{name: classes}`` dict.
        head: path of the classifier to replace (e.g. ``"classifier.1"``: an ``nn.Linear``, or a 1×1 ``nn.Conv2d``
            followed by pooling); ``None`` finds it (:func:`find_head`).
        domain_names: names of the domains (default ``"domain0"``, ...), usable as ``model(x, name)``.
        exclude: qualified names of convolutions and BatchNorms (subclasses included) to keep frozen and
            shared; pruning never rebuilds them, and training leaves their statistics alone.
        switch_init: initial switch value (1e-3 in the papers: every channel starts on).
    """
    domain_names, num_classes = _domains(num_classes, domain_names)
    head = find_head(backbone, head)
    net = copy.deepcopy(backbone)
    exclude = set(exclude)
    modules = dict(net.named_modules())
    every_name = dict(net.named_modules(remove_duplicate=False))  # (an alias can be excluded by any of its names)
    for name in exclude:
        if not isinstance(every_name.get(name), (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            raise ValueError(f"exclude names {name!r}, which is not a convolution, BatchNorm or linear layer of the "
                             "backbone")  # fmt: skip
    exclude |= {n for n, m in every_name.items() if any(m is every_name[e] for e in exclude)}
    convs = [(n, m) for n, m in modules.items() if type(m) is nn.Conv2d and n not in exclude and n != head]
    if not convs:
        raise ValueError(f"{type(backbone).__name__} has no nn.Conv2d to put switches on")
    in_channels = _check_layers(net, modules, exclude | {head})

    for p in net.parameters():
        p.requires_grad_(False)
    for name, m in convs:
        net.set_submodule(name, SwitchConv2d(m, len(num_classes), init=switch_init))
    for name, m in modules.items():
        if type(m) is nn.BatchNorm2d and name not in exclude:
            net.set_submodule(name, DomainBatchNorm2d.from_batchnorm(m, len(num_classes)))
    old_head = modules[head]
    conv_head = isinstance(old_head, nn.Conv2d)
    width = old_head.in_channels if conv_head else old_head.in_features
    heads = DomainHeads(width, list(num_classes), bias=old_head.bias is not None, conv=conv_head)
    net.set_submodule(head, heads.to(old_head.weight.device))
    model = MultiDomainNet(net, domain_names, in_channels, head)
    model.excluded = sorted(exclude)  # (what a rebuild from the backbone must exclude again)
    return model


def find_head(backbone: nn.Module, head: str | None = None) -> str:
    """The path of the classifier: ``head`` if given (checked), else the last ``nn.Linear`` registered, else (a
    model without one, like SqueezeNet) the 1×1 ``nn.Conv2d`` whose output reaches the model's output through
    activations, dropout, pooling and flattening only (found in the ``torch.fx`` trace)."""
    if head is None:
        linears = [n for n, m in backbone.named_modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else _conv_head(backbone)
        if head is None:
            raise ValueError(f"{type(backbone).__name__} has no classifier head mdlprune can find: neither an "
                             "nn.Linear nor a 1x1 nn.Conv2d followed by pooling at the output; pass "
                             "head='<path of the classifier>'")  # fmt: skip
        return head
    try:
        module = backbone.get_submodule(head)
    except AttributeError:
        raise ValueError(f"{type(backbone).__name__} has no attribute {head!r} to use as the classifier head: pass "
                         "head='<path of its final nn.Linear>' (e.g. 'classifier.1'), or head=None to find it") from None
    if not (isinstance(module, nn.Linear) or _is_conv_classifier(module)):
        raise ValueError(f"the head {head!r} of {type(backbone).__name__} is a {type(module).__name__}, not an "
                         "nn.Linear or a 1x1 nn.Conv2d: pass head='<path of its final classifier>', or head=None "
                         "to find it")  # fmt: skip
    return head


def _is_conv_classifier(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.kernel_size == (1, 1) and m.groups == 1 and m.stride == (1, 1)
            and m.padding in ((0, 0), "valid"))  # fmt: skip


# What may sit between a convolutional classifier and the output: per-channel and pooling layers, flattening.
_AFTER_HEAD_MODULES = (nn.ReLU, nn.Dropout, nn.Identity, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten)
_AFTER_HEAD_FUNCTIONS = {torch.flatten, torch.relu, F.relu, F.dropout, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_AFTER_HEAD_METHODS = {"flatten", "view", "reshape", "squeeze", "mean", "relu"}


def _conv_head(backbone: nn.Module) -> str | None:
    graph = trace(copy.deepcopy(backbone))
    if graph is None:
        return None
    modules = dict(backbone.named_modules())
    output = next(n for n in graph.nodes if n.op == "output")
    node = output.args[0]
    while isinstance(node, fx.Node) and node.args:
        m = modules.get(node.target) if node.op == "call_module" else None
        if _is_conv_classifier(m):
            return node.target
        if not (type(m) in _AFTER_HEAD_MODULES or node.op == "call_function" and node.target in _AFTER_HEAD_FUNCTIONS
                or node.op == "call_method" and node.target in _AFTER_HEAD_METHODS):  # fmt: skip
            return None
        node = node.args[0]
    return None


def _domains(num_classes, domain_names) -> tuple[list[str], list[int]]:
    if isinstance(num_classes, Mapping):
        if domain_names is not None and list(domain_names) != list(num_classes):
            raise ValueError(f"domain_names {list(domain_names)} do not match the keys of num_classes {list(num_classes)}")
        domain_names, num_classes = list(num_classes), list(num_classes.values())
    if isinstance(num_classes, (str, bytes)) or not isinstance(num_classes, Sequence) or not num_classes:
        raise ValueError(f"num_classes must be a non-empty sequence with the number of classes of each domain, "
                         f"got {num_classes!r}")  # fmt: skip
    for n in num_classes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_classes must hold positive ints (classes per domain), got {list(num_classes)}")
    names = [str(n) for n in domain_names] if domain_names is not None else [f"domain{d}" for d in range(len(num_classes))]
    if len(names) != len(num_classes):
        raise ValueError(f"num_classes has {len(num_classes)} entries but there are {len(names)} domains ({names}): "
                         "give one number of classes per domain")  # fmt: skip
    if len(set(names)) != len(names):
        raise ValueError(f"domain names must be unique, got {names}")
    return names, list(num_classes)


def _check_layers(net: nn.Module, modules: dict[str, nn.Module], exclude: set[str]) -> int:
    """Refuse what conversion cannot do exactly (module docstring); return the input channels of the conv that
    reads the image."""
    names = defaultdict(list)
    for name, m in net.named_modules(remove_duplicate=False):
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            names[id(m)].append(name)
    aliased = [n for n in names.values() if len(n) > 1 and not exclude & set(n)]
    if aliased:
        raise ValueError(f"layers registered under several names ({aliased}): one name would get switches or "
                         "per-domain statistics and the other not; give each use its own module, or exclude=[...] "
                         "all its names to keep it shared")  # fmt: skip
    subclasses = [f"{n} ({type(m).__name__})" for n, m in modules.items() if n not in exclude and (
        isinstance(m, nn.Conv2d) and type(m) is not nn.Conv2d or isinstance(m, nn.BatchNorm2d) and type(m) is not nn.BatchNorm2d)]  # fmt: skip
    if subclasses:
        raise ValueError(f"subclasses of nn.Conv2d / nn.BatchNorm2d with a forward of their own: {subclasses}; "
                         "switches and per-domain BatchNorms would replace that forward. Keep them frozen and "
                         "shared with exclude=[...]")  # fmt: skip
    convs = [n for n, m in modules.items() if type(m) is nn.Conv2d and n not in exclude]
    every_conv = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    graph = trace(copy.deepcopy(net))  # (a forward that stores on self would keep fx proxies)
    if graph is None:  # cannot look inside: the first registered conv reads the image
        return modules[every_conv[0]].in_channels
    def harmless(user: fx.Node) -> bool:  # x.to(self.conv.weight.dtype): metadata, not the weights
        return user.op == "call_function" and user.target is getattr and user.args[1] in ("dtype", "device", "shape")

    read = sorted({str(node.target).rpartition(".")[0] for node in graph.nodes if node.op == "get_attr"
                   and not all(harmless(u) for u in node.users)} & set(convs))  # fmt: skip
    if read:
        raise ValueError(f"the model reads the weights of {read} outside their own forward (e.g. F.conv2d(x, "
                         "self.conv.weight)), where switches cannot reach; call the module instead, or "
                         "exclude=[...] those layers")  # fmt: skip
    image = next((node for node in graph.nodes if node.op == "placeholder"), None)
    first = next((n.target for n in graph.nodes if n.op == "call_module" and n.target in every_conv and n.args
                  and n.args[0] is image), every_conv[0])  # fmt: skip
    return modules[first].in_channels
