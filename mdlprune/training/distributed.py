"""Training on several processes and machines with ``torchrun`` and PyTorch's DistributedDataParallel.

``mdlprune train --config ...`` runs unchanged under ``torchrun --nproc_per_node=N`` (one machine) or a
multi-node ``torchrun``: :func:`init_from_env` reads torchrun's environment and joins the process group (NCCL
on GPUs, gloo on CPUs). Then:

* every rank draws the same global batch and trains on its ``rank::world_size`` slice (the loaders shard), so
  the round-robin schedule is identical on every rank and a checkpoint resumes with any number of processes;
* the model is wrapped in ``DistributedDataParallel`` over its trainable parameters; gradients are averaged,
  so switches, heads and BatchNorms stay identical on every rank, and so do the multipliers λ_d and λ_PS,
  which are computed from the switches alone;
* the BatchNorms compute their batch statistics over the *global* batch (:class:`SyncBatchNorm2d`, which works
  with gloo as well as NCCL, unlike ``torch.nn.SyncBatchNorm``): a run on N processes computes what one
  process would with the same global batch, up to the order of float sums;
* only rank 0 writes checkpoints and outputs; logged metrics are averaged over ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from ..method.domain import rebuild_batchnorm

__all__ = ["DistInfo", "init_from_env", "is_distributed", "SyncBatchNorm2d", "convert_sync_batchnorm",
           "revert_sync_batchnorm", "all_reduce_sum", "max_divergence", "barrier"]  # fmt: skip


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ...); a single
    process needs nothing. ``device``: ``auto`` (a GPU per process when there are GPUs), ``cpu`` or ``cuda``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but PyTorch sees no CUDA GPU")
    if world <= 1:
        return DistInfo(0, 1, 0, ("cuda" if use_cuda else "cpu") if device == "auto" else device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, f"cuda:{local}" if use_cuda else "cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _AllReduceSum(torch.autograd.Function):
    """y = Σ_ranks x; each rank's loss depends on y, so ∂L/∂x = Σ_ranks ∂L_r/∂y."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        g = grad.clone()
        dist.all_reduce(g)
        return g


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (identity in a single process)."""
    return _AllReduceSum.apply(x) if is_distributed() else x


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch, summed over ranks with a
    differentiable all-reduce (gloo or NCCL). In eval mode, or in a single process, it is ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        c = x.shape[1]
        count = all_reduce_sum(torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device))
        mean = all_reduce_sum(x.sum(dim=(0, 2, 3))) / count
        var = all_reduce_sum((x - mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                n = float(count)
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * n / max(n - 1, 1), alpha=f)
        # Normalise by hand: F.batch_norm refuses statistics that require grad (they do here, through x).
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.affine:
            scale, shift = scale * self.weight, shift * self.weight + self.bias
        return x * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)


def _swap_batchnorms(module: nn.Module, to: type) -> nn.Module:
    for name, child in module.named_children():
        if type(child) in (nn.BatchNorm2d, SyncBatchNorm2d) and type(child) is not to:
            setattr(module, name, rebuild_batchnorm(child, to))
        else:
            _swap_batchnorms(child, to)
    return module


def convert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` (those inside :class:`~mdlprune.DomainBatchNorm2d` too) by
    :class:`SyncBatchNorm2d`, in place."""
    return _swap_batchnorms(model, SyncBatchNorm2d)


def revert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Back to plain ``nn.BatchNorm2d`` (before saving a model for single-process use), in place."""
    return _swap_batchnorms(model, nn.BatchNorm2d)


@torch.no_grad()
def max_divergence(tensors: list[torch.Tensor]) -> float:
    """The largest absolute difference between any rank's copy of ``tensors`` and rank 0's (0.0 in a single
    process): a check that the ranks did not drift apart."""
    if not is_distributed():
        return 0.0
    worst = torch.zeros((), device=tensors[0].device if tensors else "cpu")
    for t in tensors:
        ref = t.detach().clone()
        dist.broadcast(ref, 0)
        worst = torch.maximum(worst, (t.detach() - ref).abs().max().to(worst.device))
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)
