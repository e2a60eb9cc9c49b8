"""The two interfaces the trainer and the evaluator read: a benchmark of named domains, and a loader whose
epochs can be resumed exactly (and sharded over the ranks of ``torchrun``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["Benchmark", "EpochLoader", "shard", "shown_path"]


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of a global batch (every rank gets ``len // world_size`` items)."""
    if world_size == 1:
        return indices
    if len(indices) % world_size:
        raise ValueError(
            f"a global batch of {len(indices)} cannot be split evenly over {world_size} processes: use a batch "
            f"size divisible by the number of processes (and drop_last=True)"
        )
    return indices[rank::world_size]


class EpochLoader:
    """Batches of ``num_samples`` items whose epochs draw all their randomness, at their start, from a CPU
    ``torch.Generator``. After ``load_state_dict(state)``, ``iterate(start=k, resume=True)`` replays the epoch
    that was under way from batch k, and ``iterate()`` continues with the next epoch, exactly. Every rank
    draws the same global batch and keeps its ``rank::world_size`` slice (:func:`shard`).

    Subclasses implement :meth:`_batches`, given the epoch's order of items and the first batch.
    """

    def __init__(self, num_samples: int, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_state = self.generator.get_state()

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def state_dict(self) -> dict:
        """The generator's state now, and at the start of the current (or last) epoch."""
        return {"generator": self.generator.get_state(), "epoch_start": self._epoch_state}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._epoch_state = state["epoch_start"]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.iterate()

    def iterate(self, start: int = 0, resume: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch, from batch ``start`` (see the class docstring). Lazy: nothing is drawn before the first
        batch is asked for, so creating the iterators of every domain at once does not touch their generators."""
        if resume:
            self.generator.set_state(self._epoch_state)
        else:
            self._epoch_state = self.generator.get_state()
        n = self.num_samples
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        yield from self._batches(order, start)

    def batch_indices(self, order: torch.Tensor, k: int) -> torch.Tensor:
        """The items of batch ``k`` this rank reads."""
        return shard(order[k * self.batch_size : (k + 1) * self.batch_size], self.rank, self.world_size)

    def _batches(self, order: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class Benchmark:
    """Named target domains (``targets``, each with ``name``, ``num_classes``, ``flip`` and ``loader(...)``) at
    one input resolution (``image_size``)."""

    targets: list
    image_size: int

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.targets]

    @property
    def num_classes(self) -> list[int]:
        return [d.num_classes for d in self.targets]

    def __len__(self) -> int:
        return len(self.targets)

    def identity(self) -> dict:
        """What identifies these data for a run (a resumed run must see the same): domains, classes, input size
        (subclasses add what else selects the images)."""
        return {"domains": self.names, "num_classes": self.num_classes, "image_size": self.image_size}

    def __iter__(self):
        return iter(self.targets)

    def __getitem__(self, name: str):
        for d in self._all_domains():
            if d.name == name:
                return d
        raise KeyError(f"unknown domain {name!r}: this benchmark has {[d.name for d in self._all_domains()]}")

    def _all_domains(self) -> list:
        return list(self.targets)


def shown_path(path: str | Path) -> str:
    """``path`` relative to the working folder or its parent (a notebook runs in notebooks/), else to the home
    folder, else as it is: a printed model or page shows no machine's layout."""
    path = Path(path).resolve()
    for base, prefix in ((Path.cwd(), ""), (Path.cwd().parent, "../"), (Path.home(), "~/")):
        try:
            return prefix + path.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)
