"""mdlprune: Budget-Aware Pruning for Multi-Domain Learning (dos Santos et al., ICIAP 2023), built on
Budget-Aware Adapters (BA², Berriel et al., ICCV 2019).

One frozen backbone serves N domains. Every convolution gets per-domain binary switches over its input
channels; a budget loss keeps each domain under a budget β, a sharing loss pulls the domains onto the same
channels, and the channels no domain uses are physically pruned.

Modules, one concept each (read them in this order):

=====================  ==============================================================================
``switch``             :class:`SwitchConv2d`, binary switches with straight-through gradients (eqs. 2-3)
``domain``             :class:`DomainBatchNorm2d` and :class:`DomainHeads`, per-domain layers
``multidomain``        :func:`to_multidomain`: any torchvision-style CNN → :class:`MultiDomainNet`
``models``             the papers' backbones: Rebuffi's ResNet-26, Wide ResNet-28-k
``losses``             budget loss with dual ascent (eq. 4), sharing losses (eq. 5)
``dependencies``       which producers' filters pruning may remove (FX graph analysis)
``prune``              :func:`prune`: the physically smaller model
``metrics``            MACs (THOP), parameter memory, S-score, S_O, S_P
``serialization``      atomic saves; loading with ``weights_only=True``
=====================  ==============================================================================
"""

from .domain import DomainBatchNorm2d, DomainHeads, DomainModule
from .losses import BudgetLoss, IntersectionLoss, JaccardLoss, SharingLoss, UnionLoss
from .metrics import count_macs, param_bits, relative_macs, relative_param_bits, s_o, s_p, s_score
from .multidomain import MultiDomainNet, randomize_switches, to_multidomain
from .prune import PrunedConv2d, prune
from .serialization import load_model, save_model
from .switch import SwitchConv2d, binarize

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
    "prune",
    "count_macs",
    "relative_macs",
    "param_bits",
    "relative_param_bits",
    "s_score",
    "s_o",
    "s_p",
    "save_model",
    "load_model",
]
