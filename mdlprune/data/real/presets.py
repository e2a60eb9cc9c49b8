"""Real benchmarks for machines with internet (Colab) or local copies.

* :func:`torchvision_decathlon`: a Decathlon-like benchmark built from torchvision's own loaders, which
  download with ``download=True``: CIFAR-100, SVHN, GTSRB, DTD, Flowers-102, FGVC-Aircraft and Omniglot,
  resized to the Decathlon convention (shorter side 72 px, 64 px crops).
* :func:`imagenet_to_sketch`: the ImageNet-to-Sketch setting from ImageFolder directories
  ``root/<dataset>/train/<class>/*.jpg`` and ``root/<dataset>/test/<class>/*.jpg`` (224 px, ResNet-50).

Each returns ``{name: RealDomain}``; a ``RealDomain`` holds the train / val / test datasets (a validation
split is held out of the training set, with a fixed seed, where the dataset has none).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets
from torchvision import transforms as T

from ..crops import MultiCrop
from .decathlon import DECATHLON_DOMAINS, NO_FLIP, DatasetNotFoundError, DecathlonDataset, channel_stats, decathlon_transform
from ..base import Benchmark
from .loaders import DatasetLoader

__all__ = ["RealDomain", "RealBenchmark", "torchvision_decathlon", "imagenet_to_sketch", "decathlon_devkit",
           "TORCHVISION_DECATHLON", "SKETCH_DOMAINS"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class RealDomain:
    name: str
    num_classes: int
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    flip: bool
    test_crops: int


class _Split(torch.utils.data.Dataset):
    """``base[indices[i]]`` with ``transform`` applied to the image (``base`` returns PIL images)."""

    def __init__(self, base, indices: Sequence[int] | None, transform):
        self.base, self.indices, self.transform = base, indices, transform

    def __len__(self) -> int:
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[i if self.indices is None else self.indices[i]]
        return self.transform(image.convert("RGB")), int(label)


def _holdout(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, int(round(n * fraction)))
    return sorted(perm[k:]), sorted(perm[:k])


def _transforms(train_size: int, resize: int, flip: bool, mean, std, crops: int, random_resized: bool = False):
    if random_resized:
        train = [T.RandomResizedCrop(train_size)]
    else:
        train = [T.Resize(resize), T.RandomCrop(train_size) if flip else T.CenterCrop(resize)]
    if flip:
        train.append(T.RandomHorizontalFlip())
    norm = [T.ToTensor(), T.Normalize(mean, std)]
    test_size = train_size if (flip or random_resized) else resize
    val = [T.Resize(resize), T.CenterCrop(test_size), *norm]
    test = val if crops == 1 else [T.Resize(resize), T.CenterCrop(resize), *norm, MultiCrop(train_size, crops)]
    return T.Compose(train + norm), T.Compose(val), T.Compose(test)


# name → (torchvision class, kwargs for train, val (or None: hold out), test, classes, flip)
TORCHVISION_DECATHLON = {
    "cifar100": (datasets.CIFAR100, {"train": True}, None, {"train": False}, 100, True),
    "svhn": (datasets.SVHN, {"split": "train"}, None, {"split": "test"}, 10, False),
    "gtsrb": (datasets.GTSRB, {"split": "train"}, None, {"split": "test"}, 43, False),
    "dtd": (datasets.DTD, {"split": "train"}, {"split": "val"}, {"split": "test"}, 47, True),
    "flowers102": (datasets.Flowers102, {"split": "train"}, {"split": "val"}, {"split": "test"}, 102, True),
    "aircraft": (datasets.FGVCAircraft, {"split": "train"}, {"split": "val"}, {"split": "test"}, 100, True),
    "omniglot": (datasets.Omniglot, {"background": True}, None, None, 964, False),
}


def torchvision_decathlon(
    root: str | os.PathLike,
    domains: Sequence[str] | None = None,
    download: bool = True,
    test_crops: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, RealDomain]:
    """The Decathlon-like preset (see the module docstring). Normalisation uses ImageNet's statistics, as
    the ImageNet-pretrained backbones it is meant for expect. ``test_crops`` defaults to the protocol's:
    5 for domains trained without flips, 10 for the others."""
    root = Path(root)
    out = {}
    for name in domains or list(TORCHVISION_DECATHLON):
        if name not in TORCHVISION_DECATHLON:
            raise ValueError(f"unknown preset domain {name!r}: choose from {list(TORCHVISION_DECATHLON)}")
        cls, train_kw, val_kw, test_kw, classes, flip = TORCHVISION_DECATHLON[name]
        crops = test_crops or (10 if flip else 5)
        t_train, t_val, t_test = _transforms(64, 72, flip, IMAGENET_MEAN, IMAGENET_STD, crops)
        try:
            base_train = cls(str(root), download=download, **train_kw)
            if name == "omniglot":  # 20 drawings per character: 12 train, 4 val, 4 test
                by_class: dict[int, list[int]] = {}
                for i, (_, c) in enumerate(base_train._flat_character_images):
                    by_class.setdefault(c, []).append(i)
                parts = [[i for ids in by_class.values() for i in ids[a:b]] for a, b in ((0, 12), (12, 16), (16, 20))]
                splits = [_Split(base_train, p, t) for p, t in zip(parts, (t_train, t_val, t_test))]
            else:
                base_test = cls(str(root), download=download, **test_kw)
                if val_kw is None:
                    tr, va = _holdout(len(base_train), val_fraction, seed)
                    splits = [_Split(base_train, tr, t_train), _Split(base_train, va, t_val), _Split(base_test, None, t_test)]
                else:
                    base_val = cls(str(root), download=download, **val_kw)
                    splits = [_Split(base_train, None, t_train), _Split(base_val, None, t_val), _Split(base_test, None, t_test)]
        except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
            raise DatasetNotFoundError(
                f"{name}: {e} (looked in {root}); run with download=True on a machine with internet, or copy "
                f"torchvision's {cls.__name__} files there"
            ) from e
        out[name] = RealDomain(name, classes, *splits, flip=flip, test_crops=crops)
    return out


SKETCH_DOMAINS = ["imagenet", "cubs", "cars", "flowers", "wikiart", "sketches"]
_PRECROPPED = {"cubs", "cars"}  # tested with one crop (the images are already cropped to the object)


def imagenet_to_sketch(
    root: str | os.PathLike,
    domains: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, RealDomain]:
    """ImageNet-to-Sketch from ImageFolder directories ``root/<domain>/{train,test}/<class>/``.

    224 px: random-resized crops and flips for training; testing resizes to 256 and takes the central crop
    (cubs, cars) or 10 crops (the others). A validation split is held out of ``train``.
    """
    root = Path(root)
    out = {}
    for name in domains or SKETCH_DOMAINS:
        folders = [root / name / split for split in ("train", "test")]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise DatasetNotFoundError(
                f"ImageNet-to-Sketch domain {name!r}: missing {missing}. Lay each dataset out as "
                "<root>/<domain>/{train,test}/<class>/<image> (the Piggyback release of the six datasets is "
                "in this layout)"
            )
        crops = 1 if name in _PRECROPPED else 10
        t_train, t_val, t_test = _transforms(224, 256, True, IMAGENET_MEAN, IMAGENET_STD, crops, random_resized=True)
        try:
            base_train = datasets.ImageFolder(str(folders[0]))
            base_test = datasets.ImageFolder(str(folders[1]))
        except FileNotFoundError as e:
            raise DatasetNotFoundError(f"ImageNet-to-Sketch domain {name!r}: {e}") from e
        if base_train.classes != base_test.classes:
            only_train = sorted(set(base_train.classes) - set(base_test.classes))
            only_test = sorted(set(base_test.classes) - set(base_train.classes))
            raise DatasetNotFoundError(
                f"{name}: train and test have different class folders (only in train: {only_train[:5]}, only in "
                f"test: {only_test[:5]}); both splits need the same class folders"
            )
        tr, va = _holdout(len(base_train), val_fraction, seed)
        out[name] = RealDomain(
            name, len(base_train.classes),
            _Split(base_train, tr, t_train), _Split(base_train, va, t_val), _Split(base_test, None, t_test),
            flip=True, test_crops=crops,
        )  # fmt: skip
    return out


def decathlon_devkit(root: str | os.PathLike, domains: Sequence[str] | None = None, max_stat_images: int = 1000) -> dict[str, RealDomain]:
    """The Visual Decathlon from its devkit (see :mod:`mdlprune.data.real.decathlon`), with per-dataset mean/std
    computed on the training images. The devkit's test labels are withheld (the evaluation server has them),
    so ``test`` is the labelled validation split here, tested with the protocol's crops."""
    out = {}
    for name in domains or [d for d in DECATHLON_DOMAINS if d != "imagenet12"]:
        train_raw = DecathlonDataset(root, name, "train")
        mean, std = channel_stats(train_raw, max_stat_images)
        crops = 5 if name in NO_FLIP else 10
        train = DecathlonDataset(root, name, "train", decathlon_transform(name, True, mean, std))
        val = DecathlonDataset(root, name, "val", decathlon_transform(name, False, mean, std))
        test = DecathlonDataset(root, name, "val", decathlon_transform(name, False, mean, std, crops=crops))
        out[name] = RealDomain(name, train_raw.num_classes, train, val, test, flip=name not in NO_FLIP, test_crops=crops)
    return out


class _RealTarget:
    """A :class:`RealDomain` with the mini-decathlon's domain interface (``loader(...)``)."""

    def __init__(self, domain: RealDomain, num_workers: int):
        self.domain, self.num_workers = domain, num_workers
        self.name, self.num_classes, self.flip = domain.name, domain.num_classes, domain.flip
        self.test_crops = domain.test_crops

    def loader(self, split: str, batch_size: int = 64, shuffle: bool | None = None, augment: bool | None = None,
               device=None, seed: int = 0, drop_last: bool = False, full: bool = False, rank: int = 0,
               world_size: int = 1) -> DatasetLoader:  # fmt: skip
        """``split``'s batches; the transforms decide crops and augmentation (``augment`` and ``full`` are
        accepted for interface compatibility: the test split already yields the protocol's crops)."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}: choose 'train', 'val' or 'test'")
        return DatasetLoader(getattr(self.domain, split), batch_size, shuffle=split == "train" if shuffle is None else shuffle,
                             seed=seed, drop_last=drop_last, num_workers=self.num_workers, device=device,
                             rank=rank, world_size=world_size)  # fmt: skip


class RealBenchmark(Benchmark):
    """Real domains behind the interface the trainer and evaluator use for the mini-decathlon."""

    def __init__(self, domains: dict[str, RealDomain], image_size: int, num_workers: int = 4):
        self.targets = [_RealTarget(d, num_workers) for d in domains.values()]
        self.image_size = image_size

    def generate(self, include_source: bool = False) -> float:
        return 0.0  # real data are read from disk as needed

    def identity(self) -> dict:
        sizes = {t.name: {s: len(getattr(t.domain, s)) for s in ("train", "val", "test")} for t in self.targets}
        return {**super().identity(), "sizes": sizes}

    def __repr__(self) -> str:
        return f"RealBenchmark({self.names}, {self.image_size} px)"
