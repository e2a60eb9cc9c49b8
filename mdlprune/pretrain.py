"""Pretrain a backbone on the mini-decathlon's source domain, and load the shipped one.

The papers start from ImageNet weights; offline, our backbone learns the mini-decathlon's broad ``source``
domain instead. The shipped weights were made by the command in their JSON record::

    python -m mdlprune.pretrain --out data/backbones/resnet26-w0.375-mini.pt

``load_backbone()`` verifies the file against the SHA-256 in that record before loading it with
``torch.load(weights_only=True)``; it needs no network.

With internet, ImageNet weights work the same way (use 64 px or larger inputs)::

    backbone = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    model = mdlprune.to_multidomain(backbone, num_classes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import mini_decathlon
from .evaluate import accuracy
from .models import resnet26
from .serialization import CheckpointError, atomic_save

__all__ = ["load_backbone", "backbone_record", "pretrain", "DEFAULT_BACKBONE", "backbones_dir"]

DEFAULT_BACKBONE = "resnet26-w0.375-mini"


def backbones_dir() -> Path:
    """``data/backbones`` of the source checkout (where the shipped weights live)."""
    return Path(__file__).resolve().parents[1] / "data" / "backbones"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backbone_record(name: str = DEFAULT_BACKBONE, folder: str | Path | None = None) -> dict:
    """The JSON record of a shipped backbone: architecture, SHA-256, source accuracy, the command."""
    path = Path(folder or backbones_dir()) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no backbone record {path}: the shipped backbone lives in data/backbones/ of a source checkout "
            f"(clone the repository), or make one with `python -m mdlprune.pretrain --out {path.with_suffix('.pt')}`"
        )
    return json.loads(path.read_text())


def load_backbone(name: str = DEFAULT_BACKBONE, folder: str | Path | None = None) -> nn.Module:
    """The pretrained source backbone (with its source-domain ``fc`` head), checked against its SHA-256."""
    folder = Path(folder or backbones_dir())
    record = backbone_record(name, folder)
    weights = folder / record["file"]
    if not weights.is_file():
        raise FileNotFoundError(f"the weights {weights} named by {name}.json are missing: `git checkout data/backbones`")
    digest = _sha256(weights)
    if digest != record["sha256"]:
        raise CheckpointError(
            f"{weights} does not match its recorded SHA-256 ({digest[:12]}… ≠ {record['sha256'][:12]}…): the file "
            "is corrupt or was changed; restore it with `git checkout data/backbones` or re-run the command in "
            f"{name}.json"
        )
    model = resnet26(record["num_classes"], width=record["width"])
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


def pretrain(
    width: float = 0.375,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 0.1,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "cpu",
    size: str | None = "default",
    log=print,
) -> tuple[nn.Module, dict]:
    """Train ResNet-26 on the source domain with SGD + cosine schedule; return the model and its metrics."""
    torch.manual_seed(seed)
    bench = mini_decathlon(seed=seed, size=size)
    source = bench.source
    train = source.loader("train", batch_size, device=device, seed=seed, drop_last=True)
    val = source.loader("val", 256, device=device)
    test = source.loader("test", 256, device=device)
    model = resnet26(source.num_classes, width=width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * len(train), pct_start=0.15)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, y in train:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(train):.3f}, val {accuracy(model, val):.2f}%, "
            f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    metrics = {
        "source_val_accuracy": round(accuracy(model, val), 2),
        "source_test_accuracy": round(accuracy(model, test), 2),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return model.cpu(), metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mdlprune.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=backbones_dir() / f"{DEFAULT_BACKBONE}.pt", help="weights file to write")
    p.add_argument("--width", type=float, default=0.375, help="ResNet-26 width multiplier (default 0.375)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", default="default", choices=["default", "quick"], help="source split sizes")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, metrics = pretrain(args.width, args.epochs, args.batch_size, args.lr, seed=args.seed, device=args.device, size=args.size)
    out = atomic_save(model.state_dict(), args.out)
    from .data.domains import GENERATOR_VERSION

    record = {
        "file": out.name,
        "sha256": _sha256(out),
        "architecture": "resnet26",
        "width": args.width,
        "num_classes": model.fc.out_features,
        "input_size": 32,
        "source": f"mini-decathlon source domain, generator v{GENERATOR_VERSION}, seed {args.seed}, size {args.size}",
        **metrics,
        "epochs": args.epochs,
        "command": "python -m mdlprune.pretrain " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {args.device}",
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
