"""Serving every domain from one model: a specialised model per domain, kept for the eval passes.

A pruned multi-domain model runs, in each layer, the union of the domains' channels, routed per domain: a gather
where a layer reads part of its input, the domain's kernel slice where the domains differ (METHOD §6). One
domain's :func:`~mdlprune.specialize` d model runs only that domain's channels, with BatchNorm folded, and is
faster (benchmarks/RESULTS.md: on the mini backbone 0.68-0.84 of the backbone's latency against 1.00-1.01).
:func:`keep_domain_models` lets the multi-domain model serve its eval passes from such models, built on each
domain's first pass and rebuilt when any parameter or buffer of the model changes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .multidomain import MultiDomainNet
from .specialize import specialize

__all__ = ["keep_domain_models"]


def keep_domain_models(model: MultiDomainNet, keep: bool) -> MultiDomainNet:
    """Whether ``model``'s eval passes without gradients run one specialised model per domain (module docstring)
    instead of the multi-domain layers.

    Passes in train mode, with gradients, or under ``torch.compile`` / export / tracing run the layers, and so do
    the MAC counts of what a domain *needs*; :func:`~mdlprune.executed_macs` counts what runs, the domain's model.
    BatchNorm is folded into the convolutions, so outputs differ from the layers' by rounding (≤ 1e-5 × the
    output scale, tested). What it holds: one specialised model per domain that ran, together less than the
    per-domain kernel slices the layers keep (on the mini backbone 1.60 × the backbone's floats against 1.76 ×),
    and those slices are not built while it is on. Edits in place are seen (:func:`domain_model`); after assigning
    new tensors or modules by hand, call ``model.refresh()``. The choice is an attribute of ``model``, saved with it
    (:func:`~mdlprune.save_model`), not part of its ``state_dict``. Returns ``model``."""
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"keep_domain_models expects a MultiDomainNet (trained or pruned), got {type(model).__name__}")
    model.keep_domain_models = bool(keep)
    if not keep:
        model.__dict__.pop("_domain_models", None)
    return model


def domain_model(model: MultiDomainNet, d: int) -> nn.Module | None:
    """Domain ``d``'s specialised model of :func:`keep_domain_models`: the kept one, or a new one if a parameter or
    buffer of ``model`` was edited in place since it was built; ``None`` for a model made under inference mode (its
    tensors count no edits), whose passes then run the layers.

    What is watched is the version counters of the model's tensors (summed: they only grow), listed on the first
    pass; ``to()``, ``load_state_dict`` and :meth:`~mdlprune.MultiDomainNet.refresh` drop everything kept."""
    kept = model.__dict__.get("_domain_models")
    if kept is None:
        tensors = [*model.parameters(), *model.buffers()]
        if any(t.is_inference() for t in tensors):
            return None
        kept = model.__dict__["_domain_models"] = {"tensors": tensors, "version": None, "models": {}}
    version = sum(t._version for t in kept["tensors"])
    if version != kept["version"]:  # an edit: every domain's model is stale
        kept["version"], kept["models"] = version, {}
    plain = kept["models"].get(d)
    if plain is None:
        with torch.inference_mode(False):  # (built from a pass under inference mode, it must serve outside it too)
            plain = kept["models"][d] = specialize(model, d)
    return plain
