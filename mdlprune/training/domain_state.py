"""The domain-specific parameters θ_d of a trained model, on their own (METHOD §1).

A trained multi-domain model is the frozen backbone θ₀ plus, per domain, its switches, its BatchNorms and its
head. Only the second part is the result of training: a few tens of KB per domain for the mini backbone, against
megabytes for the whole model. :func:`save_domain_state` writes that part (the switches as bits: the forward
pass only reads their sign), :func:`load_domain_state` rebuilds the whole model from it and the backbone, and the
rebuilt model computes exactly what the trained one did (bit for bit: same frozen weights, same binary switches,
same BatchNorms and heads), provided it is rebuilt from the same backbone (its SHA-256 is recorded and checked).
``mdlprune sweep`` writes one such file per run, so that trained runs can ship without shipping models.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from ..method.domain import DomainBatchNorm2d, DomainHeads
from ..method.convert import to_multidomain
from ..method.multidomain import MultiDomainNet
from ..method.switch import SwitchConv2d
from .checkpoint import CheckpointError, atomic_save, fingerprint, load_checkpoint

__all__ = ["domain_state", "save_domain_state", "load_domain_state", "DOMAIN_STATE_FORMAT"]

DOMAIN_STATE_FORMAT = "mdlprune-domain-state-1"


def domain_state(model: MultiDomainNet) -> dict[str, torch.Tensor]:
    """``{state-dict key: tensor}`` of the domain-specific parameters: switches as booleans (on / off),
    per-domain BatchNorms (affine parameters and running statistics) and heads."""
    if not isinstance(model, MultiDomainNet):
        raise TypeError(f"domain_state reads a MultiDomainNet, got {type(model).__name__}")
    if not model.switch_layers():
        raise ValueError("the model has no switch convolutions (is it pruned?): save the trained model's domain "
                         "state, from which the pruned one is rebuilt by prune()")  # fmt: skip
    prefixes = [f"backbone.{name}." for name, m in model.backbone.named_modules()
                if isinstance(m, (DomainBatchNorm2d, DomainHeads))]  # fmt: skip
    out = {}
    for key, t in model.state_dict().items():
        if key.endswith(".switches"):
            out[key] = (t > SwitchConv2d.threshold).cpu()
        elif key.startswith(tuple(prefixes)):
            out[key] = t.detach().cpu().clone()
    return out


def save_domain_state(model: MultiDomainNet, path: str | os.PathLike, backbone: nn.Module, **meta) -> Path:
    """Write the domain-specific parameters of ``model``, trained from ``backbone`` (whose SHA-256 is recorded),
    and ``meta`` (method, β, seed, accuracies, ...)."""
    record = {"format": DOMAIN_STATE_FORMAT, "domain_names": list(model.domain_names),
              "num_classes": model.heads.num_classes, "head": model.head_name, "exclude": list(model.excluded),
              "backbone_sha256": fingerprint(backbone), "state": domain_state(model), "meta": meta}  # fmt: skip
    return atomic_save(record, path)


def load_domain_state(path: str | os.PathLike, backbone: nn.Module, switch_magnitude: float = 1e-3
                      ) -> tuple[MultiDomainNet, dict]:  # fmt: skip
    """Rebuild the trained model from ``backbone`` (the one it was trained from) and the file; returns it in
    eval mode, and the file's ``meta``. Switches come back as ``±switch_magnitude`` (their sign is what counts)."""
    record = load_checkpoint(path)
    if record.get("format") != DOMAIN_STATE_FORMAT:
        raise CheckpointError(f"{path} is not a file of domain-specific parameters (format {record.get('format')!r})")
    if fingerprint(backbone) != record["backbone_sha256"]:
        raise CheckpointError(f"{path} was trained from another backbone (SHA-256 {record['backbone_sha256'][:12]}…, "
                              f"this one {fingerprint(backbone)[:12]}…): rebuild it from the backbone it was trained from")  # fmt: skip
    model = to_multidomain(backbone, list(record["num_classes"]), record["head"], domain_names=record["domain_names"],
                           exclude=record["exclude"])  # fmt: skip
    state = model.state_dict()
    expected = set(domain_state(model))
    if set(record["state"]) != expected:
        odd = sorted(set(record["state"]) ^ expected)
        raise CheckpointError(f"{path} does not hold the domain-specific parameters this backbone has (e.g. "
                              f"{odd[:3]}): it was trained from another backbone")  # fmt: skip
    for key, t in record["state"].items():
        if t.shape != state[key].shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(t.shape)}, this backbone's {tuple(state[key].shape)}:"
                                  " it was trained from another backbone")  # fmt: skip
        if key.endswith(".switches"):
            t = torch.where(t, switch_magnitude, -switch_magnitude).to(state[key].dtype)
        state[key] = t
    model.load_state_dict(state)
    return model.eval(), dict(record.get("meta", {}))
