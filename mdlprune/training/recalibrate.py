"""BatchNorm recalibration after training (ours; METHOD §5).

A domain's switches keep changing after its last batches (the sharing loss moves them while the other domains
train), so the running statistics its BatchNorms collected no longer match the masks it is evaluated with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..method.domain import DomainBatchNorm2d
from ..method.multidomain import MultiDomainNet

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(model: MultiDomainNet, loaders: Sequence, batches: int = 20) -> None:
    """Recompute every domain's BatchNorm running statistics with its current switches.

    During simultaneous training a domain's switches keep changing after its last batches (the sharing loss
    moves them while other domains train), so the running statistics its BatchNorms collected no longer match
    the masks the model is evaluated with. This runs ``batches`` training batches of each domain through the
    model, averaging the statistics of each batch equally (``momentum=None``); nothing else changes.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, DomainBatchNorm2d)]
    for d, loader in enumerate(loaders):
        bns = [m.bns[d] for m in norms]
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        saved = loader.state_dict()  # leave the training randomness untouched
        for k, (x, _) in enumerate(loader.iterate()):
            if k == batches:
                break
            model(x.to(device), d)
        loader.load_state_dict(saved)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
            bn.eval()
    model.train(was_training)
