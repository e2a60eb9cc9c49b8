"""The files shipped in the repository's ``data/`` folder: the pretrained backbone, the Finetune baseline and
the trained runs of the committed sweep.

The papers start from ImageNet weights; offline, our backbone learns the mini-decathlon's broad ``source``
domain instead (:mod:`mdlprune.experiments.pretrain` made it; its JSON record holds the command).
:func:`load_backbone` verifies the file against the SHA-256 in that record before loading it with
``torch.load(weights_only=True)``; it needs no network. With internet, ImageNet weights work the same way::

    backbone = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    model = mdlprune.to_multidomain(backbone, num_classes)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from ..method.backbones import resnet26
from ..method.multidomain import MultiDomainNet
from ..training.checkpoint import CheckpointError
from ..training.domain_state import load_domain_state

__all__ = ["shipped_dir", "backbone_record", "load_backbone", "load_baseline", "shipped_runs", "load_trained", "sweep_path",
           "DEFAULT_BACKBONE", "BASELINE", "RESULTS"]  # fmt: skip

DEFAULT_BACKBONE = "resnet26-w0.375-mini"
BASELINE = "baselines/mini-finetune.json"
RESULTS = "results/mini-sweep"


def shipped_dir() -> Path:
    """The ``data/`` folder of the source checkout (``$MDLPRUNE_SHIPPED`` overrides it)."""
    if os.environ.get("MDLPRUNE_SHIPPED"):
        return Path(os.environ["MDLPRUNE_SHIPPED"]).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backbone_record(name: str = DEFAULT_BACKBONE, folder: str | Path | None = None) -> dict:
    """The JSON record of a shipped backbone: architecture, SHA-256, source accuracy, the command."""
    path = Path(folder or shipped_dir() / "backbones") / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no backbone record {path}: the shipped backbone lives in data/backbones/ of a source checkout "
            f"(clone the repository, or set MDLPRUNE_SHIPPED to its data/ folder), or make one with "
            f"`python -m mdlprune.experiments.pretrain --out {path.with_suffix('.pt')}`"
        )
    return json.loads(path.read_text())


def load_backbone(name: str = DEFAULT_BACKBONE, folder: str | Path | None = None) -> nn.Module:
    """The pretrained source backbone (with its source-domain ``fc`` head), checked against its SHA-256."""
    folder = Path(folder or shipped_dir() / "backbones")
    record = backbone_record(name, folder)
    weights = folder / record["file"]
    if not weights.is_file():
        raise FileNotFoundError(f"the weights {weights} named by {name}.json are missing: `git checkout data/backbones`")
    digest = sha256(weights)
    if digest != record["sha256"]:
        raise CheckpointError(
            f"{weights} does not match its recorded SHA-256 ({digest[:12]}… ≠ {record['sha256'][:12]}…): the file "
            "is corrupt or was changed; restore it with `git checkout data/backbones` or re-run the command in "
            f"{name}.json"
        )
    model = resnet26(record["num_classes"], width=record["width"])
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


def load_baseline(path: str | Path | None = None) -> tuple[dict[str, float] | None, str]:
    """The Finetune accuracies that set the S-score's E_max, and a sentence saying where they come from.

    Default: the shipped record of the mini-decathlon (``data/baselines/mini-finetune.json``, written by
    ``mdlprune sweep --record-baseline data/baselines/mini-finetune.json``). Returns ``(None, why)`` when there is none."""
    path = Path(path) if path else shipped_dir() / BASELINE
    if not path.is_file():
        return None, f"no Finetune baseline at {path}: S-scores need one (`mdlprune sweep --record-baseline data/baselines/mini-finetune.json`)"
    record = json.loads(path.read_text())
    return record["accuracies"], f"E_max from the Finetune run in {path.name} ({record['command']})"


def sweep_path() -> Path:
    """The committed sweep's rows (``docs/results/mini-sweep.json`` of the source checkout next to ``data/``):
    what the shipped runs of :func:`load_trained` measured, with the Finetune and Feature baselines."""
    return shipped_dir().parent / "docs" / "results" / "mini-sweep.json"


def run_name(method: str, beta: float | None, seed: int) -> str:
    """The file stem of a run's domain-specific parameters, as ``mdlprune sweep`` writes them."""
    return method + (f"-beta{beta:g}" if beta is not None else "") + f"-seed{seed}"


def shipped_runs(folder: str | Path | None = None) -> list[str]:
    """The names of the trained runs shipped with the committed sweep (``data/results/mini-sweep/``)."""
    folder = Path(folder or shipped_dir() / RESULTS)
    return sorted(p.stem for p in folder.glob("*.pt"))


def load_trained(method: str, beta: float | None = None, seed: int = 0, backbone: nn.Module | None = None,
                 folder: str | Path | None = None) -> tuple[MultiDomainNet, dict]:  # fmt: skip
    """A run of the committed sweep, rebuilt in seconds from the shipped backbone and its domain-specific
    parameters (switch bits, per-domain BatchNorms, heads): ``(model in eval mode, its record)``. The record holds
    what the sweep measured (``accuracies``, ``rel_macs``, ``rel_params``, ``theta_bar``, ...); evaluating the
    rebuilt model on the default test sets gives back those accuracies exactly."""
    folder = Path(folder or shipped_dir() / RESULTS)
    path = folder / f"{run_name(method, beta, seed)}.pt"
    if not path.is_file():
        runs = shipped_runs(folder)
        raise FileNotFoundError(f"no shipped run {path.stem!r} in {folder}; shipped: {', '.join(runs) or 'none'} "
                                "(`mdlprune sweep` writes more under OUT/trained/)")  # fmt: skip
    return load_domain_state(path, backbone if backbone is not None else load_backbone())
