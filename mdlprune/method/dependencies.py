"""Which convolution outputs are read only by switch convolutions (dependency-aware pruning, METHOD §6).

Switches sit on a convolution's *input* channels. When a switch is off in every domain, the consumer
ignores that channel; if every reader of the channel ignores it, its *producer* need not compute it at
all, so the producer's filter and the BatchNorm channels in between can go too. That holds inside a block
(``conv1 → BN_d → ReLU → conv2``) but not on a residual stream, which the additions, the shortcuts and
the head also read.

:func:`channel_groups` traces the backbone with ``torch.fx`` and returns, for every producer whose output
reaches only switch convolutions through channel-wise operations, the consumers and the BatchNorms on the
way. Anything the tracer cannot prove channel-wise (an addition, a concatenation, a reshape, an unknown
module) counts as a reader of every channel, so the analysis can only miss savings, never break a model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .domain import DomainBatchNorm2d, DomainModule

__all__ = ["ChannelGroup", "channel_groups", "trace"]

# Operations that act on each channel separately and keep channel c at index c.
_CHANNELWISE_MODULES = (
    nn.BatchNorm2d,
    DomainBatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool2d,
    nn.AvgPool2d,
)
_CHANNELWISE_FUNCTIONS = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardtanh,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.dropout2d,
    F.max_pool2d,
    F.avg_pool2d,
}
_CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous"}
_NORMS = (nn.BatchNorm2d, DomainBatchNorm2d)


@dataclass
class ChannelGroup:
    """A producer conv whose output channels are read only by ``consumers`` (switch convs), through
    channel-wise operations; ``norms`` are the BatchNorms on the way, to be sliced with the producer."""

    producer: str
    consumers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (DomainModule, nn.Conv2d)) or super().is_leaf_module(m, qualname)


def _only_first_arg(node: fx.Node, value: fx.Node) -> bool:
    """``value`` is the node's first positional argument and appears nowhere else in its arguments."""
    if not node.args or node.args[0] is not value:
        return False
    others: list[fx.Node] = []
    fx.node.map_arg((node.args[1:], dict(node.kwargs)), others.append)
    return value not in others


def trace(backbone: nn.Module) -> fx.Graph | None:
    """The ``torch.fx`` graph of ``backbone`` with convolutions and domain layers as leaves, or ``None`` if it
    does not trace (control flow on tensor values, unsupported Python)."""
    try:
        return _Tracer().trace(backbone)
    except Exception:
        return None


def channel_groups(backbone: nn.Module, consumer_types: tuple[type, ...]) -> list[ChannelGroup]:
    """Trace ``backbone`` and return the producer → consumers groups described in the module docstring.

    ``consumer_types`` are the modules whose input channels can be dropped (the switch convolutions).
    Returns an empty list (and prunes producers nowhere) if the backbone cannot be traced.
    """
    graph = trace(backbone)
    if graph is None:  # control flow on tensor values, unsupported Python: fall back to consumers only
        return []
    modules = dict(backbone.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def module_of(node: fx.Node) -> nn.Module | None:
        return modules.get(node.target) if node.op == "call_module" else None

    groups = []
    for node in graph.nodes:
        producer = module_of(node)
        # switch convs (grouped ones keep whole groups: prune) and plain ones left shared by ``exclude``, if
        # ungrouped; a subclass has a forward of its own and cannot be sliced exactly
        if not (type(producer) is nn.Conv2d or isinstance(producer, consumer_types)):
            continue
        if type(producer) is nn.Conv2d and producer.groups != 1:
            continue
        if calls[node.target] != 1:  # a module called twice would be sliced for both call sites
            continue
        group, ok, frontier = ChannelGroup(node.target), True, [node]
        while frontier and ok:
            value = frontier.pop()
            for user in value.users:
                m = module_of(user)
                single = user.op != "call_module" or calls[user.target] == 1
                if isinstance(m, consumer_types) and len(user.args) == 1 and not user.kwargs and single:
                    group.consumers.append(user.target)
                elif _is_channelwise(user, m) and _only_first_arg(user, value):
                    if type(m) in _NORMS:
                        if not single:
                            ok = False
                            break
                        group.norms.append(user.target)
                    frontier.append(user)
                else:
                    ok = False
                    break
        if ok and group.consumers:
            groups.append(group)
    return groups


def _is_channelwise(node: fx.Node, module: nn.Module | None) -> bool:
    if node.op == "call_module":  # exact types: a subclass has a forward of its own
        return type(module) in _CHANNELWISE_MODULES
    if node.op == "call_function":
        return node.target in _CHANNELWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in _CHANNELWISE_METHODS
    return False
