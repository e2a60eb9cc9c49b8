"""The embedded offline mini-decathlon: generation, on-disk cache, datasets and fast batch loaders.

``mini_decathlon()`` describes the benchmark; images are drawn the first time a split is used (in parallel
processes) and cached on disk, keyed by generator version, seed and resolution. Like the Visual Decathlon
(images stored at 72 px, networks fed 64 px crops), images are stored 9/8 larger than the network input
(36 px for the default 32) and cropped: randomly for training, centrally (or 5 / 10 crops) for testing.

Two ways to read a domain:

* ``domain.dataset("train")``: a ``torch.utils.data.Dataset`` of ``(image_tensor, label)``, for a
  ``DataLoader`` and any code that expects one;
* ``domain.loader("train", batch_size=64, device="cuda")``: the fast path. The whole split lives on the
  device as one uint8 tensor, and crops, flips and normalisation are done batch-wise there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from ...training.config import quick_mode
from ..base import Benchmark, EpochLoader, shown_path
from ..shipped import shipped_dir
from .domains import GENERATOR_VERSION, QUICK_SIZES, TARGETS, DomainSpec
from .source import SOURCE

__all__ = ["mini_decathlon", "MiniDecathlon", "MiniDomain", "MiniDataset", "TensorLoader", "default_root"]

SPLITS = ("train", "val", "test")
DOMAINS = {spec.name: spec for spec in [SOURCE, *TARGETS]}
_DOMAIN_IDS = {name: i for i, name in enumerate(DOMAINS)}
_CHUNK = 256


def default_root() -> Path:
    """Where generated data are cached: ``$MDLPRUNE_DATA``, else ``data/cache`` of a source checkout, else
    ``~/.cache/mdlprune``."""
    if os.environ.get("MDLPRUNE_DATA"):
        return Path(os.environ["MDLPRUNE_DATA"]).expanduser()
    checkout = shipped_dir()
    if (checkout / "README.md").is_file() and os.access(checkout, os.W_OK):
        return checkout / "cache"
    return Path.home() / ".cache" / "mdlprune"


def _render_chunk(name: str, seed: int, split: str, start: int, stop: int, stored: int) -> np.ndarray:
    spec = DOMAINS[name]
    ids = (_DOMAIN_IDS[name], SPLITS.index(split))
    out = np.empty((stop - start, stored, stored, 3), np.uint8)
    for k, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([seed, *ids, i])
        out[k] = spec.draw(rng, i % spec.num_classes, stored)
    return out


def _file_record(path: Path) -> dict:
    """Size and SHA-256 of a cached file, as its split's manifest records them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _save_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class MiniDomain:
    """One domain of the mini-decathlon (see :mod:`mdlprune.data.mini.domains` for what each one draws)."""

    def __init__(self, spec: DomainSpec, bench: "MiniDecathlon", sizes: Mapping[str, int]):
        self.spec = spec
        self.bench = bench
        self.sizes = dict(sizes)
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._stats: tuple[list[float], list[float]] | None = None
        self._verified: set[str] = set()

    name = property(lambda self: self.spec.name)
    num_classes = property(lambda self: self.spec.num_classes)
    class_names = property(lambda self: self.spec.class_names)
    flip = property(lambda self: self.spec.flip, doc="whether horizontal flips are a valid augmentation")
    description = property(lambda self: self.spec.description)

    def __repr__(self) -> str:
        return f"MiniDomain({self.name!r}, classes={self.num_classes}, sizes={self.sizes})"

    def _path(self, split: str, what: str) -> Path:
        return self.bench.cache_dir / f"{self.name}-{split}-{self.sizes[split]}-{what}.npy"

    def is_cached(self, split: str) -> bool:
        return self._path(split, "images").is_file() and self._path(split, "labels").is_file()

    def is_trusted(self, split: str) -> bool:
        """The split is cached and its files match their manifest (checked once; a mismatch is reported on
        stderr, and the caller regenerates the split)."""
        if split in self._verified:
            return True
        if not self.is_cached(split):
            return False
        problem = self._cache_problem(split)
        if problem is not None:
            print(f"mdlprune: regenerating the cached {self.name}/{split} in {self.bench.cache_dir}: {problem}",
                  file=sys.stderr)  # fmt: skip
            return False
        self._verified.add(split)
        return True

    def _cache_problem(self, split: str) -> str | None:
        """Why the cached split cannot be trusted (``None`` if its files match the manifest written with them)."""
        manifest = self._path(split, "manifest").with_suffix(".json")
        if not manifest.is_file():
            return f"it has no manifest ({manifest.name})"
        try:
            record = json.loads(manifest.read_text())
            changed = [w for w in ("images", "labels") if _file_record(self._path(split, w)) != record[w]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"its manifest cannot be read ({e})"
        return f"its {' and '.join(changed)} changed since they were generated" if changed else None

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images uint8 (N, S, S, 3), labels int64 (N,))`` at the stored size S, generated on first use."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: the mini-decathlon has {list(SPLITS)}")
        if split not in self._arrays:
            if not self.is_trusted(split):
                self.bench._generate([(self, split)])
            images = np.load(self._path(split, "images"))
            labels = np.load(self._path(split, "labels"))
            self._arrays[split] = (images, labels)
        return self._arrays[split]

    def tensors(self, split: str, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images uint8 (N, 3, S, S), labels int64 (N,))`` as tensors, optionally on ``device``."""
        images, labels = self.arrays(split)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        return x.to(device), torch.from_numpy(labels).to(device)

    @property
    def stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation of the training images, in [0, 1] units."""
        if self._stats is None:
            x = self.arrays("train")[0].reshape(-1, 3).astype(np.float64) / 255.0
            self._stats = (x.mean(0).tolist(), x.std(0).tolist())
        return self._stats

    def dataset(self, split: str, augment: bool | None = None) -> "MiniDataset":
        """``split`` as a map-style Dataset of ``(normalised image (3, s, s), label)``; training data are
        augmented (random crop, and flip where valid) unless ``augment=False``."""
        images, labels = self.tensors(split)
        augment = split == "train" if augment is None else augment
        return MiniDataset(images, labels, self.bench.image_size, *self.stats, augment=augment, flip=self.flip)

    def loader(
        self,
        split: str,
        batch_size: int = 64,
        shuffle: bool | None = None,
        augment: bool | None = None,
        device: str | torch.device | None = None,
        seed: int = 0,
        drop_last: bool = False,
        full: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> "TensorLoader":
        """The fast path: a :class:`TensorLoader` over ``split`` held on ``device`` as one tensor.
        ``full=True`` yields the uncropped stored images, for 5- and 10-crop testing."""
        images, labels = self.tensors(split, device)
        train = split == "train"
        return TensorLoader(
            images, labels, batch_size, self.bench.stored_size if full else self.bench.image_size, *self.stats,
            shuffle=train if shuffle is None else shuffle, augment=train if augment is None else augment,
            flip=self.flip, seed=seed, drop_last=drop_last, rank=rank, world_size=world_size,
        )  # fmt: skip


class MiniDecathlon(Benchmark):
    """The mini-decathlon: five target domains (iterate over them) and a ``source`` domain."""

    def __init__(self, image_size: int, seed: int, sizes: dict[str, dict[str, int]], root: Path, workers: int):
        self.image_size = image_size
        self.stored_size = image_size * 9 // 8
        self.seed = seed
        self.root = Path(root)
        self.workers = workers
        self.cache_dir = self.root / f"mini-v{GENERATOR_VERSION}-seed{seed}-px{self.stored_size}"
        self.source = MiniDomain(SOURCE, self, sizes[SOURCE.name])
        self.targets = [MiniDomain(spec, self, sizes[spec.name]) for spec in TARGETS]

    def _all_domains(self) -> list[MiniDomain]:
        return [*self.targets, self.source]

    def identity(self) -> dict:
        return {**super().identity(), "generator": GENERATOR_VERSION, "seed": self.seed,
                "sizes": {d.name: d.sizes for d in self.targets}}  # fmt: skip

    def __repr__(self) -> str:
        return f"MiniDecathlon({self.image_size} px, seed {self.seed}, targets={self.names}, cache={shown_path(self.cache_dir)})"

    def generate(self, include_source: bool = True) -> float:
        """Draw and cache every split not cached yet; returns the seconds it took."""
        domains = [*self.targets, self.source] if include_source else list(self.targets)
        t0 = time.perf_counter()
        self._generate([(d, s) for d in domains for s in SPLITS if not d.is_trusted(s)])
        return time.perf_counter() - t0

    def _generate(self, todo: list[tuple[MiniDomain, str]]) -> None:
        if not todo:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        jobs = [
            (d, split, start, min(start + _CHUNK, d.sizes[split]))
            for d, split in todo
            for start in range(0, d.sizes[split], _CHUNK)
        ]
        args = [(d.name, self.seed, split, a, b, self.stored_size) for d, split, a, b in jobs]
        if self.workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(min(self.workers, len(jobs))) as pool:
                chunks = list(pool.map(_render_chunk, *zip(*args)))
        else:
            chunks = [_render_chunk(*a) for a in args]
        parts: dict[tuple[str, str], list[np.ndarray]] = {}
        for (d, split, _, _), chunk in zip(jobs, chunks):
            parts.setdefault((d.name, split), []).append(chunk)
        for d, split in todo:
            n = d.sizes[split]
            images = np.concatenate(parts[(d.name, split)]) if n else np.empty((0, self.stored_size, self.stored_size, 3), np.uint8)
            _save_npy(d._path(split, "images"), images)
            _save_npy(d._path(split, "labels"), np.arange(n, dtype=np.int64) % d.num_classes)
            manifest = {what: _file_record(d._path(split, what)) for what in ("images", "labels")}
            _save_text(d._path(split, "manifest").with_suffix(".json"), json.dumps(manifest, indent=1) + "\n")
            d._verified.add(split)

    def sample_grid(self, path: str | os.PathLike | None = None, per_domain: int = 8, include_source: bool = True, split: str = "val"):
        """A figure with ``per_domain`` samples of every domain (one row each); saved to ``path`` if given."""
        domains = ([self.source] if include_source else []) + list(self.targets)
        fig, axes = plt.subplots(len(domains), 1, figsize=(per_domain * 0.9 + 1.8, len(domains) * 1.0 + 0.2))
        for ax, d in zip(np.atleast_1d(axes), domains):
            images, labels = d.arrays(split)
            # one sample each of classes spread over the whole label range
            classes = np.unique(np.linspace(0, d.num_classes - 1, per_domain).round().astype(int))
            picks = [int(np.flatnonzero(labels == c)[0]) for c in classes if (labels == c).any()]
            picks += [i for i in range(len(labels)) if i not in picks][: per_domain - len(picks)]
            ax.imshow(np.concatenate([images[i] for i in picks], axis=1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"{d.name}\n({d.num_classes})", rotation=0, ha="right", va="center", fontsize=9)
        fig.suptitle(f"mini-decathlon ({self.stored_size} px stored, {self.image_size} px crops)", fontsize=10)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        return fig


def _resolve_sizes(size: str | Mapping | None) -> dict[str, dict[str, int]]:
    if size is None:
        size = "quick" if quick_mode() else "default"
    out: dict[str, dict[str, int]] = {}
    for spec in (SOURCE, *TARGETS):
        if size == "default":
            out[spec.name] = dict(spec.sizes)
        elif size == "quick":
            out[spec.name] = {**spec.sizes, **QUICK_SIZES["source" if spec is SOURCE else "target"]}
        elif isinstance(size, Mapping):
            per = size.get(spec.name, size) if any(k in DOMAINS for k in size) else size
            base = dict(spec.sizes)
            base.update({k: v for k, v in per.items() if k in SPLITS})
            bad = [k for k in per if k not in SPLITS and k not in DOMAINS]
            if bad:
                raise ValueError(f"size keys must be splits {list(SPLITS)} or domain names {list(DOMAINS)}, got {bad}")
            out[spec.name] = base
        else:
            raise ValueError(f"size must be 'default', 'quick' or a dict of split sizes, got {size!r}")
        for split, n in out[spec.name].items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"split sizes must be non-negative ints, got {spec.name}/{split} = {n!r}")
    return out


def mini_decathlon(
    image_size: int = 32,
    seed: int = 0,
    size: str | Mapping | None = None,
    root: str | os.PathLike | None = None,
    workers: int | None = None,
) -> MiniDecathlon:
    """The embedded, procedurally generated multi-domain benchmark (no download, no internet).

    Args:
        image_size: network input resolution, 32 (default) or 64; images are stored 9/8 larger.
        seed: which samples are drawn (classes do not depend on it). Same seed → byte-identical data.
        size: ``"default"``, ``"quick"`` (for CI; the default when ``MDLPRUNE_QUICK=1``: the targets' training
            sets, 300 test images per target, a 200-image source), or a dict of split sizes, either for every domain
            (``{"train": 500, "test": 200}``) or per domain (``{"digits": {"train": 500}}``).
        root: cache folder (default :func:`default_root`).
        workers: processes drawing images (default: the number of CPU cores, at most 8).
    """
    if image_size not in (32, 64):
        raise ValueError(f"image_size must be 32 or 64, got {image_size}")
    workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, int(workers))
    return MiniDecathlon(image_size, int(seed), _resolve_sizes(size), Path(root) if root else default_root(), workers)


# -- datasets and loaders ----------------------------------------------------------------------------------
class MiniDataset(torch.utils.data.Dataset):
    """Map-style dataset of ``(normalised float image (3, crop, crop), label)`` from a uint8 tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop: int, mean: Sequence[float], std: Sequence[float], augment: bool, flip: bool):
        self.images, self.labels, self.crop = images, labels, crop
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.augment, self.flip = augment, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i]
        pad = x.shape[-1] - self.crop
        if self.augment:
            oy, ox = torch.randint(0, pad + 1, (2,)).tolist()
            x = x[:, oy : oy + self.crop, ox : ox + self.crop]
            if self.flip and torch.rand(()) < 0.5:
                x = x.flip(-1)
        else:
            o = pad // 2
            x = x[:, o : o + self.crop, o : o + self.crop]
        return (x.float() / 255 - self.mean) / self.std, int(self.labels[i])


class TensorLoader(EpochLoader):
    """Batches from a split held as one uint8 tensor (on any device): shuffling, random crops, flips and
    normalisation happen batch-wise on that device. Resumable and shardable as every
    :class:`~mdlprune.data.base.EpochLoader`: an epoch's order, crop offsets and flips are all drawn at its
    start."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, crop: int, mean, std, *,
                 shuffle: bool, augment: bool, flip: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):  # fmt: skip
        super().__init__(len(labels), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                         world_size=world_size)  # fmt: skip
        self.images, self.labels, self.crop = images, labels, crop
        self.augment, self.flip = augment, flip
        dev = images.device
        self.mean = torch.tensor(mean, device=dev).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=dev).view(1, 3, 1, 1)

    def _batches(self, order: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, g, dev = self.num_samples, self.generator, self.images.device
        pad = self.images.shape[-1] - self.crop
        if self.augment:
            offsets = torch.randint(0, pad + 1, (n, 2), generator=g)
            flips = (torch.rand(n, generator=g) < 0.5) & self.flip
        else:
            offsets = torch.full((n, 2), pad // 2)
            flips = torch.zeros(n, dtype=torch.bool)
        ar = torch.arange(self.crop)
        for k in range(start, len(self)):
            idx = self.batch_indices(order, k)
            x = self.images[idx.to(dev)]
            b, c, h, w = x.shape
            if pad:
                rows = (offsets[idx, 0, None] + ar).to(dev)
                cols = (offsets[idx, 1, None] + ar).to(dev)
                x = x.gather(2, rows[:, None, :, None].expand(b, c, self.crop, w))
                x = x.gather(3, cols[:, None, None, :].expand(b, c, self.crop, self.crop))
            if self.augment and self.flip:
                f = flips[idx].to(dev).view(-1, 1, 1, 1)
                x = torch.where(f, x.flip(-1), x)
            yield (x.float() / 255 - self.mean) / self.std, self.labels[idx.to(dev)]
