"""mdlprune: Budget-Aware Pruning for Multi-Domain Learning (dos Santos et al., ICIAP 2023), built on
Budget-Aware Adapters (BA², Berriel et al., ICCV 2019).

One frozen backbone serves N domains. Every convolution gets per-domain binary switches over its input
channels; a budget loss keeps each domain under a budget β, a sharing loss pulls the domains onto the same
channels, and the channels no domain uses are physically pruned.

The package is layered; each layer imports only from the layers above it in this list:

=================  ==========================================================================================
``method``         the paper: switches, per-domain layers, losses, pruning, metrics, backbones (torch only)
``training``       configuration, the method table, the round-robin trainer, checkpoints, distributed runs
``data``           the embedded mini-decathlon, the real benchmarks, multi-crop testing, the shipped files
``experiments``    runs, evaluation, tables, plots, the ``mdlprune`` command
``course``         the notebooks' helpers
=================  ==========================================================================================

The names below are the public API; ``docs/METHOD.md`` explains the method section by section.
"""

from .method.domain import DomainBatchNorm2d, DomainHeads, DomainModule
from .method.losses import BudgetLoss, IntersectionLoss, JaccardLoss, SharingLoss, UnionLoss
from .method.macs import count_macs, executed_macs, needed_macs, relative_macs
from .method.metrics import param_bits, relative_param_bits, s_o, s_p, s_score
from .method.convert import to_multidomain
from .method.multidomain import MultiDomainNet, randomize_switches
from .method.prune import prune
from .method.pruned import PrunedConv2d, keep_domain_kernels
from .method.serving import keep_domain_models
from .method.specialize import specialize
from .method.switch import SwitchConv2d, binarize
from .training.checkpoint import load_model, save_model

__version__ = "0.1.0"

__all__ = [
    "SwitchConv2d",
    "binarize",
    "DomainModule",
    "DomainBatchNorm2d",
    "DomainHeads",
    "MultiDomainNet",
    "to_multidomain",
    "randomize_switches",
    "BudgetLoss",
    "SharingLoss",
    "IntersectionLoss",
    "UnionLoss",
    "JaccardLoss",
    "PrunedConv2d",
    "keep_domain_kernels",
    "keep_domain_models",
    "prune",
    "specialize",
    "count_macs",
    "needed_macs",
    "executed_macs",
    "relative_macs",
    "param_bits",
    "relative_param_bits",
    "s_score",
    "s_o",
    "s_p",
    "save_model",
    "load_model",
]
