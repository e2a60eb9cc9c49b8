"""Test-time multi-crop evaluation (METHOD §5): 1 crop, 5 crops (centre + 4 corners), 10 crops (+ mirrors).

The papers test with one crop where images are already cropped, five crops for domains that were trained
without mirroring, ten for the others. :func:`predict` averages the model's softmax probabilities over the
crops. Batched tensors in, batched tensors out, so it works the same on a GPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["center_crop", "five_crops", "ten_crops", "multi_crop", "MultiCrop", "predict"]


def _check(x: torch.Tensor, size: int) -> tuple[int, int]:
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the images ({h}×{w})")
    return h, w


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size``×``size`` crop of ``(..., H, W)``."""
    h, w = _check(x, size)
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def five_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(5, ..., size, size)``: centre, top-left, top-right, bottom-left, bottom-right."""
    h, w = _check(x, size)
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    crops = [center_crop(x, size)] + [x[..., t : t + size, l : l + size] for t, l in corners]
    return torch.stack(crops)


def ten_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(10, ..., size, size)``: the five crops, then their horizontal mirrors."""
    five = five_crops(x, size)
    return torch.cat([five, five.flip(-1)])


def multi_crop(x: torch.Tensor, size: int, crops: int) -> torch.Tensor:
    """``(crops, ..., size, size)`` for ``crops`` in 1, 5, 10."""
    if crops == 1:
        return center_crop(x, size).unsqueeze(0)
    if crops == 5:
        return five_crops(x, size)
    if crops == 10:
        return ten_crops(x, size)
    raise ValueError(f"crops must be 1, 5 or 10, got {crops}")


class MultiCrop(nn.Module):
    """A transform for one image tensor ``(C, H, W)`` → ``(crops, C, size, size)``; put it after
    ``ToTensor`` / ``Normalize`` in a torchvision pipeline, and feed the batches to :func:`predict`."""

    def __init__(self, size: int, crops: int = 10):
        super().__init__()
        multi_crop(torch.zeros(1, size, size), size, crops)  # validates ``crops``
        self.size, self.crops = size, crops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return multi_crop(x, self.size, self.crops)

    def extra_repr(self) -> str:
        return f"size={self.size}, crops={self.crops}"


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, domain: int | str | None = None, crops: int = 1, size: int | None = None) -> torch.Tensor:
    """Class probabilities ``(B, K)`` averaged over test-time crops.

    ``x`` is either a batch of full images ``(B, C, H, W)``, cropped here to ``size`` (1, 5 or 10 crops),
    or a batch already cropped by :class:`MultiCrop`, ``(B, n, C, h, w)``. ``domain`` is passed to the
    model as its second argument when given (multi-domain models).
    """
    if x.dim() == 5:
        b, n = x.shape[:2]
        flat = x.flatten(0, 1)
    elif x.dim() == 4:
        if size is None:
            raise ValueError("predict needs the crop size for a batch of full images")
        stacked = multi_crop(x, size, crops)  # (n, B, C, s, s)
        n, b = stacked.shape[:2]
        flat = stacked.transpose(0, 1).flatten(0, 1)
    else:
        raise ValueError(f"expected images (B, C, H, W) or crops (B, n, C, h, w), got {tuple(x.shape)}")
    logits = model(flat) if domain is None else model(flat, domain)
    return logits.softmax(-1).view(b, n, -1).mean(1)
