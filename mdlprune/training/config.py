"""Run configuration: every setting of a run and its default, in one place, validated once.

A run is described by a :class:`RunConfig` with three typed sections and two scalars::

    data:                      # DataConfig: which benchmark
      benchmark: mini          # mini | decathlon | torchvision | sketch
      root: null               # dataset folder (real benchmarks); the mini-decathlon's cache folder
      image_size: 32           # mini: 32 or 64
      size: default            # mini: default | quick | {train: N, val: N, test: N}
      domains: null            # a subset of the benchmark's domains, in order
      num_workers: 4           # DataLoader workers (real benchmarks)
      download: false          # torchvision preset: download missing datasets
      seed: 0                  # mini: which images are drawn
    model:                     # ModelConfig: which backbone
      backbone: mini           # mini (the shipped, pretrained ResNet-26) | resnet26 | wrn28 | resnet18 | resnet50
      weights: null            # torchvision backbones: "imagenet", or a state_dict file
      width: 1.0               # resnet26 / wrn28 width multiplier
      k: 10                    # wrn28 widening factor
    train: {...}               # TrainConfig: method, beta, rounds, learning rates, ... (below)
    output: runs/experiment    # checkpoint, trained and pruned models, results
    device: auto               # auto (cuda if available) | cpu | cuda | cuda:1

Configuration files (YAML or JSON) give any subset; ``extends: NAME`` starts from another file (e.g. the
quick preset extends ``mini``). The files shipped with the package (``mdlprune/configs/*.yaml``) are named
without a path: ``load_config("mini")``; ``overrides`` such as ``"train.beta=0.25"`` change any key.
Defaults live in the dataclasses below and nowhere else. The defaults of :class:`TrainConfig` are the paper's
for the Visual Decathlon (METHOD §5); ``configs/mini.yaml`` holds the mini-decathlon's CPU settings.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..method.losses import SHARING_LOSSES, check_beta
from .methods import METHODS, get_method
from .schedule import SCHEDULES

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "load_config", "builtin_configs",
           "quick_mode", "resolve_device"]  # fmt: skip

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def quick_mode() -> bool:
    """True when ``MDLPRUNE_QUICK=1``: CI and quick notebook runs use small data and few rounds."""
    return os.environ.get("MDLPRUNE_QUICK", "0").lower() not in ("", "0", "false", "no")


COSTS = ("switches", "params", "macs")


def _costs(value):
    """``train.cost_weighted`` in its one form: None (θ̄ counts switches: the papers' budget), one cost
    (``"params"`` or ``"macs"``), or a tuple of two or three distinct costs, each under the same β (METHOD §3)."""
    kinds = ["switches" if k is None else k for k in (value if isinstance(value, (list, tuple)) else [value])]
    if not kinds or any(k not in COSTS for k in kinds) or len(set(kinds)) != len(kinds):
        raise ValueError(f"cost_weighted must be None, 'params', 'macs' or a list of distinct costs from {list(COSTS)} "
                         f"(e.g. [switches, macs]: a budget on each), got {value!r}")  # fmt: skip
    if len(kinds) == 1:
        return None if kinds[0] == "switches" else kinds[0]
    return tuple(k for k in COSTS if k in kinds)  # (one order: [macs, switches] is the same budget)


def _closest(name: str, valid) -> str:
    match = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _from_dict(cls, d: dict[str, Any], section: str):
    if not isinstance(d, dict):
        raise ValueError(f"the {section} section is a mapping of settings, got {d!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in names:
            raise ValueError(f"unknown setting {section}.{key}{_closest(key, names)}; valid ones: {sorted(names)}")
    return cls(**d)


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _number(value, name: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if positive and value == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


@dataclass
class DataConfig:
    """Which benchmark a run trains on (see the module docstring)."""

    benchmark: str = "mini"
    root: str | None = None
    image_size: int = 32
    size: str | dict = "default"
    domains: list[str] | None = None
    num_workers: int = 4
    download: bool = False
    seed: int = 0

    def __post_init__(self):
        kinds = ("mini", "decathlon", "torchvision", "sketch")
        if self.benchmark not in kinds:
            raise ValueError(f"unknown benchmark {self.benchmark!r}{_closest(str(self.benchmark), kinds)}: choose one of {list(kinds)}")
        _positive_int(self.image_size, "data.image_size")
        _positive_int(self.num_workers, "data.num_workers", 0)
        _positive_int(self.seed, "data.seed", 0)
        if self.domains is not None:
            self.domains = [str(d) for d in self.domains]


@dataclass
class ModelConfig:
    """Which backbone a run adapts (see the module docstring)."""

    backbone: str = "mini"
    weights: str | None = None
    width: float = 1.0
    k: int = 10

    def __post_init__(self):
        _number(self.width, "model.width", positive=True)
        _positive_int(self.k, "model.k")


@dataclass
class TrainConfig:
    """Training hyper-parameters; the defaults are the paper's for the Visual Decathlon (METHOD §5).

    ``rounds`` counts round-robin rounds: in each, every domain trains for one epoch (``schedule``). The
    learning rates are multiplied by ``lr_gamma`` at each of ``lr_milestones`` (in rounds). ``lr_domain`` is
    the SGD learning rate of the domain-specific layers (heads and BatchNorms; everything but the switches
    for Finetune), ``lr_switches`` Adam's on the switches.

    Two choices of ours, where the papers are silent (METHOD §5): the switches follow
    ``switch_optimizer="lazy_adam"`` (a domain's switches move only when they get a gradient; ``"adam"`` is
    plain Adam), and after training every domain's BatchNorm statistics are recomputed with its final switches
    over ``bn_recalibration`` batches (0 turns it off).
    """

    method: str = "ours"
    beta: float = 0.5
    rounds: int = 60
    batch_size: int = 32
    lr_domain: float = 1e-3
    lr_switches: float = 1e-4
    lr_milestones: tuple[int, ...] = (45,)
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_lambda: float = 1.0
    sharing: str = "intersection"
    lambda_ps: float = 1.0
    learnable_lambda_ps: bool = False
    lr_lambda_ps: float = 0.05
    cost_weighted: str | tuple[str, ...] | None = None
    schedule: str = "round_robin"
    switch_optimizer: str = "lazy_adam"
    bn_recalibration: int = 20
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        get_method(self.method)  # raises on an unknown name
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}{_closest(str(self.schedule), SCHEDULES)}: choose one of {list(SCHEDULES)}")
        self.beta = check_beta(self.beta)
        _positive_int(self.rounds, "rounds")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.bn_recalibration, "bn_recalibration", 0)
        _positive_int(self.seed, "seed", 0)
        for name in ("lr_domain", "lr_switches", "lr_lambda", "lambda_ps", "lr_lambda_ps", "weight_decay", "momentum"):
            setattr(self, name, _number(getattr(self, name), name))
        if not 0 < _number(self.lr_gamma, "lr_gamma") <= 1:
            raise ValueError(f"lr_gamma (the learning-rate factor at each milestone) must be in (0, 1], got {self.lr_gamma}")
        if self.switch_optimizer not in ("lazy_adam", "adam"):
            raise ValueError(f"switch_optimizer must be 'lazy_adam' or 'adam', got {self.switch_optimizer!r}")
        self.cost_weighted = _costs(self.cost_weighted)
        if str(self.sharing).lower() not in (*SHARING_LOSSES, "none"):
            raise ValueError(f"unknown sharing loss {self.sharing!r}: choose one of {sorted(SHARING_LOSSES)}")
        self.lr_milestones = tuple(_positive_int(m, "lr_milestones[i]", 0) for m in self.lr_milestones)

    def settings_that_matter(self) -> dict[str, Any]:
        """The settings this method's training depends on (``rounds`` and ``extra`` aside): a checkpoint resumes
        under any configuration that agrees on these, e.g. a Finetune run whatever ``beta`` says. ``rounds`` may
        grow (a run continues to more rounds, exactly as a longer run would train), never shrink (the trainer
        refuses a checkpoint that trained more rounds than asked)."""
        method = get_method(self.method)
        ignored = {"rounds", "extra"}
        if not method.switches:  # (BatchNorm recalibration follows the switches' final masks)
            ignored.update(("beta", "lr_switches", "lr_lambda", "cost_weighted", "switch_optimizer", "bn_recalibration"))
        if not method.sharing:
            ignored.update(("sharing", "lambda_ps", "learnable_lambda_ps", "lr_lambda_ps"))
        return {k: v for k, v in self.to_dict().items() if k not in ignored}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        if isinstance(self.cost_weighted, tuple):
            d["cost_weighted"] = list(self.cost_weighted)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, {k: tuple(v) if k == "lr_milestones" else v for k, v in d.items()}, "train")


@dataclass
class RunConfig:
    """A whole run: benchmark, backbone, training, where it writes, where it runs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str = "runs/experiment"
    device: str = "auto"

    def __post_init__(self):
        check_device(self.device)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        for key in d:
            if key not in (*sections, "output", "device"):
                raise ValueError(f"unknown configuration section {key!r}{_closest(key, [*sections, 'output', 'device'])}; "
                                 f"valid ones: {[*sections, 'output', 'device']}")  # fmt: skip
        parts = {k: TrainConfig.from_dict(d[k]) if k == "train" else _from_dict(c, d[k], k)
                 for k, c in sections.items() if k in d}  # fmt: skip
        return cls(**parts, **{k: d[k] for k in ("output", "device") if k in d})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d


def builtin_configs() -> dict[str, Path]:
    """``{name: path}`` of the configurations shipped with the package."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def _read(source: str | Path, seen: tuple = ()) -> dict[str, Any]:
    path = Path(source)
    if not path.is_file():
        shipped = builtin_configs()
        if str(source) not in shipped:
            raise FileNotFoundError(f"no configuration file {source}: give a path to a YAML/JSON file or one of the "
                                    f"shipped configurations {sorted(shipped)}")  # fmt: skip
        path = shipped[str(source)]
    text = path.read_text()
    try:
        raw = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"cannot parse the configuration {path}: {e}") from e
    return _extend(raw, (*seen, str(source)))


def _extend(raw: Any, seen: tuple) -> dict[str, Any]:
    """``raw`` on top of the configuration it ``extends`` (if any)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a configuration is a mapping of sections, got {type(raw).__name__} ({seen[-1]})")
    raw = dict(raw)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if str(base) in seen:
        raise ValueError(f"configuration {seen[-1]} extends {base!r} in a cycle: {[*seen, base]}")
    return _merge(_read(base, seen), raw)


def _merge(base: dict, new: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "size" else v
    return out


def _override(raw: dict, item: str) -> dict:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"an override is section.key=value, got {item!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"cannot parse the value of the override {item!r} as YAML: {str(e).splitlines()[0]}") from None
    node: dict = {}
    tree = node
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = parsed
    return _merge(raw, tree)


def load_config(source: str | Path | dict, overrides: list[str] | None = None) -> RunConfig:
    """Read a configuration (a path, the name of a shipped one, or a dict), apply ``overrides``
    (``"section.key=value"``, the value parsed as YAML), fill in the defaults and validate every setting."""
    raw = _extend(copy.deepcopy(source), ("<dict>",)) if isinstance(source, dict) else _read(source)
    for item in overrides or []:
        raw = _override(raw, item)
    return RunConfig.from_dict(raw)


def check_device(name: str) -> str:
    """``name`` if it is a device a run can use (auto, cpu, cuda, cuda:N), else a ``ValueError``."""
    if not (name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", str(name))):
        raise ValueError(f"unknown device {name!r}: choose auto, cpu, cuda or cuda:N")
    return name


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` if PyTorch sees a GPU, else ``cpu``; a CUDA device without a GPU is refused."""
    check_device(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but PyTorch sees no CUDA GPU: use --device cpu")
    return name
