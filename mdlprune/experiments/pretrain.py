"""Pretrain a backbone on the mini-decathlon's source domain (a one-off; the result ships in ``data/``).

The shipped weights were made by the command in their JSON record::

    python -m mdlprune.experiments.pretrain --out data/backbones/resnet26-w0.375-mini.pt

:func:`mdlprune.data.shipped.load_backbone` loads them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.mini import GENERATOR_VERSION, mini_decathlon
from ..data.mini.source import SOURCE
from ..data.shipped import DEFAULT_BACKBONE, sha256, shipped_dir
from ..method.backbones import resnet26
from ..training.checkpoint import atomic_save
from .evaluate import accuracy
from .provenance import command, machine

__all__ = ["pretrain", "main"]


def pretrain(
    width: float = 0.375,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 0.1,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "cpu",
    size: str | None = "default",
    label_smoothing: float = 0.1,
    per_class: int | None = None,
    log=print,
) -> tuple[nn.Module, dict]:
    """Train ResNet-26 on the source domain with SGD + one-cycle schedule; return the model and its metrics.

    ``per_class``: training images per source class (default: the generator's 200)."""
    torch.manual_seed(seed)
    if per_class is not None:
        size = {"source": {"train": per_class * SOURCE.num_classes}}
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
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
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
    p = argparse.ArgumentParser(prog="python -m mdlprune.experiments.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=shipped_dir() / "backbones" / f"{DEFAULT_BACKBONE}.pt",
                   help="weights file to write")
    p.add_argument("--width", type=float, default=0.375, help="ResNet-26 width multiplier (default 0.375)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", default="default", choices=["default", "quick"], help="source split sizes")
    p.add_argument("--per-class", type=int, help="training images per source class (default: the generator's 200)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, metrics = pretrain(args.width, args.epochs, args.batch_size, args.lr, seed=args.seed, device=args.device,
                              size=args.size, label_smoothing=args.label_smoothing, per_class=args.per_class)  # fmt: skip
    out = atomic_save(model.state_dict(), args.out)
    record = {
        "file": out.name,
        "sha256": sha256(out),
        "architecture": "resnet26",
        "width": args.width,
        "num_classes": model.fc.out_features,
        "input_size": 32,
        "source": f"mini-decathlon source domain, generator v{GENERATOR_VERSION}, seed {args.seed}, "
        + (f"{args.per_class} training images per class" if args.per_class else f"size {args.size}"),
        "label_smoothing": args.label_smoothing,
        **metrics,
        "epochs": args.epochs,
        "command": command(argv, "python -m mdlprune.experiments.pretrain"),
        "machine": machine(args.device),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
