"""The Visual Decathlon (Rebuffi et al., 2017) from its official devkit layout (METHOD §9).

Download ``decathlon-1.0-devkit.tar.gz`` and ``decathlon-1.0-data.tar.gz`` from
https://www.robots.ox.ac.uk/~vgg/decathlon/ (ImageNet's part needs its own licence) and extract both into
one folder, ``root``::

    root/annotations/aircraft_train.json, aircraft_val.json, aircraft_test_stripped.json, ...
    root/data/aircraft/train/0000001.jpg, ...

The annotations are COCO-like: ``images`` (``id``, ``file_name`` relative to ``root``), ``annotations``
(``image_id``, ``category_id``) and ``categories``. Category ids are offset per dataset: the label is
``category_id − min(category ids)``. The test annotations are stripped: their labels are −1.

Transforms follow the protocol: images are stored with their shorter side at 72 px; training takes a random
64 px crop and a horizontal flip, testing the central 64 px crop. GTSRB, Omniglot and SVHN are not flipped
and use the whole 72 px image, in training and testing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T

from ..crops import MultiCrop

__all__ = ["DECATHLON_DOMAINS", "NO_FLIP", "DecathlonDataset", "decathlon_transform", "channel_stats", "DatasetNotFoundError"]

DECATHLON_DOMAINS = [
    "imagenet12", "aircraft", "cifar100", "daimlerpedcls", "dtd", "gtsrb", "vgg-flowers", "omniglot", "svhn", "ucf101",
]  # fmt: skip
NO_FLIP = {"gtsrb", "omniglot", "svhn"}
_GET_IT = (
    "download decathlon-1.0-devkit.tar.gz and decathlon-1.0-data.tar.gz from https://www.robots.ox.ac.uk/~vgg/decathlon/ "
    "and extract both into the same folder"
)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or part of it) is missing or malformed; the message says how to get it."""


def _annotation_file(root: Path, domain: str, split: str) -> Path:
    name = f"{domain}_test_stripped.json" if split == "test" else f"{domain}_{split}.json"
    return root / "annotations" / name


class DecathlonDataset(torch.utils.data.Dataset):
    """One domain and split of the Visual Decathlon, as ``(image, label)`` pairs (label −1 on the test split)."""

    def __init__(self, root: str | os.PathLike, domain: str, split: str = "train", transform=None):
        if domain not in DECATHLON_DOMAINS:
            raise ValueError(f"unknown Decathlon domain {domain!r}: choose from {DECATHLON_DOMAINS}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}: choose 'train', 'val' or 'test'")
        self.root, self.domain, self.split, self.transform = Path(root), domain, split, transform
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"no Visual Decathlon folder at {self.root}: {_GET_IT}")
        ann_path = _annotation_file(self.root, domain, split)
        if not ann_path.is_file():
            raise DatasetNotFoundError(f"missing annotations {ann_path}: {_GET_IT}")
        try:
            ann = json.loads(ann_path.read_text())
            images = {im["id"]: im["file_name"] for im in ann["images"]}
            categories = sorted(c["id"] for c in ann["categories"])
            labels = {a["image_id"]: a["category_id"] - categories[0] for a in ann.get("annotations", [])}
        except (json.JSONDecodeError, KeyError, TypeError, IndexError) as e:
            raise DatasetNotFoundError(f"malformed annotations {ann_path} ({type(e).__name__}: {e}): {_GET_IT}") from e
        self.num_classes = len(categories)
        self.samples = [(self.root / f, labels.get(i, -1)) for i, f in sorted(images.items())]
        bad = sorted({y for y in labels.values() if not 0 <= y < self.num_classes})
        if bad:
            raise DatasetNotFoundError(f"{ann_path} has category ids outside its {self.num_classes} categories (labels "
                                       f"{bad[:5]} after the offset): the file is malformed; {_GET_IT}")  # fmt: skip
        if split != "test" and len(labels) != len(images):
            raise DatasetNotFoundError(f"{ann_path} labels {len(labels)} of its {len(images)} images: the file is malformed")
        for path, _ in self.samples[:1] + self.samples[-1:]:
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"missing image {path} listed in {ann_path.name}: extract decathlon-1.0-data.tar.gz into {self.root}"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, SyntaxError) as e:  # PIL: unreadable, truncated or not an image
            raise OSError(f"cannot read the image {path} ({e}): the file is corrupt; extract it again from "
                          "decathlon-1.0-data.tar.gz") from e
        return (self.transform(image) if self.transform else image), label


def decathlon_transform(domain: str, train: bool, mean: Sequence[float], std: Sequence[float], crops: int = 1) -> T.Compose:
    """The protocol's transform for ``domain`` (see the module docstring); ``crops`` = 5 or 10 at test time
    returns ``(crops, 3, s, s)`` tensors for :func:`mdlprune.data.crops.predict`."""
    no_flip = domain in NO_FLIP
    size = 72 if no_flip else 64
    steps: list = [T.Resize(72)]
    if train:
        steps += [T.CenterCrop(72)] if no_flip else [T.RandomCrop(64), T.RandomHorizontalFlip()]
    elif crops == 1:
        steps += [T.CenterCrop(size)]
    else:
        steps += [T.CenterCrop(72)]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if not train and crops != 1:
        steps.append(MultiCrop(64, crops))
    return T.Compose(steps)


def channel_stats(dataset: torch.utils.data.Dataset, max_images: int = 1000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1]) over up to ``max_images`` images of a dataset of PIL images."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:max_images].tolist()
    to_tensor = T.ToTensor()
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    n = 0
    for i in idx:
        x = to_tensor(dataset[i][0]).double().flatten(1)
        s += x.sum(1)
        s2 += (x * x).sum(1)
        n += x.shape[1]
    mean = s / n
    return mean.tolist(), (s2 / n - mean**2).clamp(min=0).sqrt().tolist()
