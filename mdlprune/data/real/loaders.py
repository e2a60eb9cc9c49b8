"""A resumable, shardable loader for map-style datasets (the real benchmarks), with the same protocol as the
mini-decathlon's :class:`~mdlprune.data.mini.TensorLoader`: ``len``, ``iterate(start, resume)``,
``state_dict`` / ``load_state_dict``.

The order of an epoch is drawn from a CPU ``torch.Generator`` at its start, so a resumed epoch visits the same
images in the same batches from the interrupted one on. The random augmentations of torchvision transforms run
in the DataLoader's worker processes and are not replayed.

Under ``torchrun``, every rank draws the same global batch and keeps its ``rank::world_size`` slice: the
schedule is the same on every rank and a checkpoint resumes with any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..base import EpochLoader

__all__ = ["DatasetLoader"]


class DatasetLoader(EpochLoader):
    """Batches ``(images, labels)`` of a map-style dataset, on ``device`` (see the module docstring)."""

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 num_workers: int = 0, device: str | torch.device | None = None, rank: int = 0, world_size: int = 1):  # fmt: skip
        super().__init__(len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                         world_size=world_size)  # fmt: skip
        self.dataset, self.num_workers, self.device = dataset, num_workers, device

    def _batches(self, order: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker_seed = int(torch.randint(2**62, (), generator=self.generator))
        batches = [self.batch_indices(order, k).tolist() for k in range(start, len(self))]
        if not batches:
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.num_workers,
            pin_memory=self.device is not None and torch.device(self.device).type == "cuda",
            generator=torch.Generator().manual_seed(worker_seed),
        )  # fmt: skip
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
