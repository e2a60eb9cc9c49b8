"""Serving every domain from one model: a specialised model per domain, kept for the eval passes.

A pruned multi-domain model runs, in each layer, the union of the domains' channels, routed per domain: a gather
where a layer reads part of its input, the domain's kernel slice where the domains differ (METHOD §6). One
domain's :func:`~mdlprune.specialize` d model runs only that domain's channels, with BatchNorm folded, and is
faster (benchmarks/RESULTS.md: on the mini backbone 0.68-0.84 of the backbone's latency against 1.00-1.01).
:func:`keep_domain_models` lets the multi-domain model serve its eval passes from such models, built on each
domain's first pass and rebuilt when a parameter or buffer it is built from changes (not another domain's
BatchNorms or head).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .domain import DomainBatchNorm2d, DomainHeads
from .multidomain import MultiDomainNet
from .specialize import specialize

__all__ = ["keep_domain_models"]


def keep_domain_models(model: MultiDomainNet, keep: bool) -> MultiDomainNet:
    """Whether ``model``'s eval passes without gradients run one specialised model per domain (module docstring)
    instead of the multi-domain layers.

    Passes in train mode (of any module), with gradients, with forward hooks, or under ``torch.compile`` / export /
    tracing run the layers, and so do the equivalence checks and the MAC counts of what a domain *needs*; :func:`~mdlprune.executed_macs` counts what runs, the domain's model.
    BatchNorm is folded into the convolutions, so outputs differ from the layers' by rounding (≤ 1e-5 × the
    output scale, tested). What it holds: one specialised model per domain that ran, together less than the
    per-domain kernel slices the layers keep (on the mini backbone 1.60 × the backbone's floats against 1.76 ×),
    and those slices are not built while it is on. Edits are seen, but for edits through ``.data``
    (:func:`domain_model`). The choice is an attribute of ``model``, saved with it
    (:func:`~mdlprune.save_model`), not part of its ``state_dict``. Returns ``model``."""
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"keep_domain_models expects a MultiDomainNet (trained or pruned), got {type(model).__name__}")
    model.keep_domain_models = bool(keep)
    if not keep:
        model.__dict__.pop("_domain_models", None)
    return model


_generation = 0  # bumped whenever a module anywhere registers a parameter, buffer or submodule (a tensor put in)
_building = False


def _registered(*_args) -> None:
    global _generation
    if not _building:  # (building a domain's model registers its own tensors)
        _generation += 1


for _register in (torch.nn.modules.module.register_module_parameter_registration_hook,
                  torch.nn.modules.module.register_module_buffer_registration_hook,
                  torch.nn.modules.module.register_module_module_registration_hook):  # fmt: skip
    _register(_registered)


def _watched(model: MultiDomainNet, d: int, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Of ``tensors`` (all of ``model``'s), those domain ``d``'s specialised model is built from: every tensor reachable
    from ``model`` without passing through another domain's entry of a per-domain BatchNorm or head. A tensor or a
    module those entries share with anything domain ``d`` reads is reached another way, so it stays watched; so do
    switches and masks, which hold every domain in one tensor."""
    read, seen, todo = set(), set(), [model]
    while todo:
        m = todo.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        read.update(id(t) for t in (*m._parameters.values(), *m._buffers.values()) if t is not None)
        entries = m.bns if isinstance(m, DomainBatchNorm2d) else m.heads if isinstance(m, DomainHeads) else None
        todo.extend(entries[d] if child is entries else child for child in m.children())
    return [t for t in tensors if id(t) in read]


def domain_model(model: MultiDomainNet, d: int) -> nn.Module | None:
    """Domain ``d``'s specialised model of :func:`keep_domain_models`, or ``None`` where the pass must run the layers.

    The layers run when any module of ``model`` is in train mode (BatchNorm recalibration) or has forward hooks, when
    global forward hooks are set, and for a model made under inference mode (its tensors count no edits). A kept
    model is rebuilt when a tensor it is built from moved or was edited in place (its address or version counter
    changed: every tensor of ``model`` but the other domains' BatchNorms and heads), and the lists watched are made
    again when any module registered a tensor or submodule since (an assignment, ``load_state_dict(assign=True)``, a
    swapped BatchNorm); ``to()``, ``load_state_dict`` and :meth:`~mdlprune.MultiDomainNet.refresh` drop everything
    kept. Not seen: edits through ``.data``."""
    global _building
    kept = model.__dict__.setdefault("_domain_models",
                                     {"generation": None, "watched": {}, "identity": {}, "models": {}})  # fmt: skip
    if kept["generation"] != _generation:  # (first pass, or a tensor was put in somewhere: list them again)
        tensors = [*model.parameters(), *model.buffers()]
        if any(t.is_inference() for t in tensors):
            return None
        kept.update(generation=_generation, modules=list(model.modules()), tensors=tensors, watched={})
    hooks = torch.nn.modules.module
    if (hooks._global_forward_hooks or hooks._global_forward_pre_hooks
            or any(m.training or m._forward_hooks or m._forward_pre_hooks for m in kept["modules"])):  # fmt: skip
        return None
    watched = kept["watched"].get(d)
    if watched is None:
        watched = kept["watched"][d] = _watched(model, d, kept["tensors"])
    identity = tuple((t.data_ptr(), t._version) for t in watched)
    last = kept["identity"].get(d)
    if last is None or last[1] != identity:  # an edit of what domain d's model is built from
        # the tensors are kept with their addresses: while they live, no new tensor can take one of those addresses
        kept["identity"][d] = (watched, identity)
        kept["models"].pop(d, None)
    plain = kept["models"].get(d)
    if plain is None:
        _building = True
        try:
            with torch.inference_mode(False):  # (built from a pass under inference mode, it must serve outside it)
                plain = kept["models"][d] = specialize(model, d)
        finally:
            _building = False
    return plain
