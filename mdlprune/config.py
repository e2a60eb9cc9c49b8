"""Experiment configuration files (YAML or JSON) for ``mdlprune train / prune / evaluate``.

A configuration has four sections; every key is optional and defaults as below::

    data:                      # which benchmark
      benchmark: mini          # mini | decathlon | torchvision | sketch
      root: null               # dataset folder (real benchmarks); the mini-decathlon's cache folder
      image_size: 32           # mini: 32 or 64
      size: default            # mini: default | quick | {train: N, val: N, test: N}
      domains: null            # a subset of the benchmark's domains, in order
      num_workers: 4           # DataLoader workers (real benchmarks)
      download: false          # torchvision preset: download missing datasets
    model:
      backbone: mini           # mini (the shipped, pretrained ResNet-26) | resnet26 | wrn28 | resnet18 | resnet50
      weights: null            # torchvision backbones: "imagenet" for ImageNet weights, or a state_dict file
      width: 1.0               # resnet26 / wrn28 width multiplier
      k: 10                    # wrn28 widening factor
    train: {...}               # mdlprune.train.TrainConfig fields (method, beta, epochs, lr_heads, ...)
    output: runs/NAME          # checkpoint, trained and pruned models, results
    device: auto               # auto (cuda if available) | cpu | cuda | cuda:1

Configurations shipped with the package (``mdlprune/configs/*.yaml``) can be named without a path:
``mdlprune train --config mini``. ``--set train.beta=0.25`` overrides any key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "load_config", "apply_overrides", "builtin_configs", "resolve_device"]

DEFAULTS: dict[str, Any] = {
    "data": {"benchmark": "mini", "root": None, "image_size": 32, "size": "default", "domains": None,
             "num_workers": 4, "download": False, "seed": 0},
    "model": {"backbone": "mini", "weights": None, "width": 1.0, "k": 10},
    "train": {},
    "output": "runs/experiment",
    "device": "auto",
}  # fmt: skip
_CONFIG_DIR = Path(__file__).with_name("configs")


def builtin_configs() -> dict[str, Path]:
    """``{name: path}`` of the configurations shipped with the package."""
    return {p.stem: p for p in sorted(_CONFIG_DIR.glob("*.yaml"))}


def _merge(base: dict, new: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in new.items():
        if where and k not in base and where != "train":
            raise ValueError(f"unknown key {where}.{k} in the configuration; valid keys: {sorted(base)}")
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "size":
            out[k] = _merge(out[k], v, k)
        else:
            out[k] = v
    return out


def load_config(source: str | Path | dict, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a configuration (a path, the name of a shipped one, or a dict), fill in the defaults, apply
    ``overrides`` (``"section.key=value"``, the value parsed as YAML)."""
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            shipped = builtin_configs()
            if str(source) in shipped:
                path = shipped[str(source)]
            else:
                raise FileNotFoundError(
                    f"no configuration file {source}: give a path to a YAML/JSON file or one of the shipped "
                    f"configurations {sorted(shipped)}"
                )
        text = path.read_text()
        try:
            raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ValueError(f"cannot parse the configuration {path}: {e}") from e
        raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(f"a configuration is a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown configuration sections {unknown}; valid sections: {sorted(DEFAULTS)}")
    cfg = _merge(DEFAULTS, raw)
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"an override is section.key=value, got {item!r}")
        parts = key.split(".")
        node = cfg
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"cannot set {key}: {p!r} is not a section of the configuration")
            node = node[p]
        if len(parts) > 1 and parts[0] != "train" and parts[-1] not in node:
            raise ValueError(f"unknown key {key}; valid keys of {parts[0]}: {sorted(node)}")
        node[parts[-1]] = yaml.safe_load(value)
    return cfg


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but PyTorch sees no CUDA GPU: use --device cpu")
    return name
