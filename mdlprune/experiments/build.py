"""From a configuration's sections to the objects they name: the benchmark and the backbone."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

from ..data.base import Benchmark
from ..data.mini import mini_decathlon
from ..data.real import RealBenchmark, decathlon_devkit, imagenet_to_sketch, torchvision_decathlon
from ..data.shipped import load_backbone
from ..method.backbones import resnet26, wrn28
from ..training.config import DataConfig, ModelConfig

__all__ = ["build_benchmark", "build_backbone", "BACKBONES"]

BACKBONES = ("mini", "resnet26", "wrn28", "resnet18", "resnet50")


def build_benchmark(data: DataConfig) -> Benchmark:
    """The benchmark a configuration's ``data`` section names."""
    if data.benchmark == "mini":
        bench = mini_decathlon(data.image_size, data.seed, data.size, data.root)
        if data.domains:
            unknown = [d for d in data.domains if d not in bench.names]
            if unknown:
                raise ValueError(f"unknown mini-decathlon domains {unknown}: choose from {bench.names}")
            bench.targets = [bench[d] for d in data.domains]
        return bench
    if not data.root:
        raise ValueError(f"the {data.benchmark} benchmark needs data.root: the folder holding (or receiving) its datasets")
    if data.benchmark == "decathlon":
        return RealBenchmark(decathlon_devkit(data.root, data.domains), 64, data.num_workers)
    if data.benchmark == "torchvision":
        found = torchvision_decathlon(data.root, data.domains, download=data.download)
        return RealBenchmark(found, 64, data.num_workers)
    return RealBenchmark(imagenet_to_sketch(data.root, data.domains), 224, data.num_workers)


def build_backbone(model: ModelConfig) -> nn.Module:
    """The backbone a configuration's ``model`` section names (with its weights)."""
    name, weights = model.backbone, model.weights
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: choose one of {list(BACKBONES)}")
    if name == "mini":
        return load_backbone()
    if weights == "imagenet":
        if name not in ("resnet18", "resnet50"):
            raise ValueError(f"ImageNet weights exist for the torchvision backbones, not for {name}")
        return getattr(torchvision.models, name)(weights="IMAGENET1K_V1")
    if name == "resnet26":
        net = resnet26(width=model.width)
    elif name == "wrn28":
        net = wrn28(k=model.k, width=model.width)
    else:
        net = getattr(torchvision.models, name)()
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return net
