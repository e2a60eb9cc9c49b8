"""The papers' backbones, with a width knob so they also train on a laptop CPU.

* :func:`resnet26`: Rebuffi et al.'s ResNet-26 for the Visual Decathlon (NeurIPS 2017; METHOD §9):
  a 3×3 stem 3→32, three stages of four basic blocks with 64/128/256 channels (each stage halves the
  resolution) and parameter-free shortcuts (average pooling + zero channels). 25 convolutions + 1 linear.
* :func:`wrn28`: the pre-activation Wide ResNet-28-k of Zagoruyko & Komodakis (BMVC 2016), the ICIAP'23
  backbone: a 3×3 stem 3→16, three groups of four blocks with 16k/32k/64k channels, 1×1 projection
  shortcuts where the shape changes.

Both end with global average pooling and a linear classifier named ``fc`` (the torchvision convention),
so :func:`mdlprune.to_multidomain` finds the head (``fc``, the last ``nn.Linear``) by itself.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ResNet26", "WideResNet28", "resnet26", "wrn28"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def _stage(block: type[nn.Module], cin: int, cout: int, stride: int, n: int, **kw) -> nn.Sequential:
    """``n`` blocks; the first changes the width and the resolution."""
    return nn.Sequential(block(cin, cout, stride, **kw), *(block(cout, cout, 1, **kw) for _ in range(n - 1)))


class _ThreeStageNet(nn.Module):
    """What both backbones share: three stages, then BN-ReLU, global average pooling and the ``fc`` head."""

    def _build(self, block: type[nn.Module], widths: list[int], strides, n: int, num_classes: int, **kw) -> None:
        stages = [_stage(block, cin, cout, s, n, **kw) for cin, cout, s in zip(widths, widths[1:], strides)]
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final = nn.BatchNorm2d(widths[-1])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        self.num_features = widths[-1]
        _init(self)

    def _stages_and_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn_final(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ZeroPadShortcut(nn.Module):
    """Rebuffi's parameter-free shortcut: average-pool by ``stride``, then append zero channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("a zero-padding shortcut cannot reduce the number of channels")
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = ZeroPadShortcut(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet26(_ThreeStageNet):
    """Rebuffi's ResNet-26 with every channel count multiplied by ``width``."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0):
        super().__init__()
        c = [max(1, round(v * width)) for v in (32, 64, 128, 256)]
        self.conv1 = _conv3x3(3, c[0])
        self.bn1 = nn.BatchNorm2d(c[0])
        self._build(BasicBlock, c, (2, 2, 2), 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._stages_and_head(F.relu(self.bn1(self.conv1(x))))


class PreActBlock(nn.Module):
    """Wide-ResNet block: BN-ReLU-conv3×3-BN-ReLU-(dropout)-conv3×3, plus the (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if (stride != 1 or cin != cout) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.dropout(F.relu(self.bn2(y))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet28(_ThreeStageNet):
    """Pre-activation WRN-28-k: 16 → 16k → 32k → 64k channels; ``width`` scales every count."""

    def __init__(
        self,
        num_classes: int = 1000,
        k: int = 10,
        width: float = 1.0,
        dropout: float = 0.0,
        strides: tuple[int, int, int] = (1, 2, 2),
    ):
        super().__init__()
        c = [max(1, round(v * width)) for v in (16, 16 * k, 32 * k, 64 * k)]
        self.conv1 = _conv3x3(3, c[0])
        self._build(PreActBlock, c, strides, (28 - 4) // 6, num_classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._stages_and_head(self.conv1(x))


def resnet26(num_classes: int = 1000, width: float = 1.0) -> ResNet26:
    """Rebuffi's ResNet-26 (``width=1``: 32/64/128/256 channels, 5.81 M conv weights)."""
    return ResNet26(num_classes, width)


def wrn28(num_classes: int = 1000, k: int = 10, width: float = 1.0, dropout: float = 0.0) -> WideResNet28:
    """Wide ResNet-28-k (``k=10``: 160/320/640 channels, 36.45 M conv weights)."""
    return WideResNet28(num_classes, k, width, dropout)
