"""Data: the embedded offline mini-decathlon, the real benchmarks, multi-crop testing, the shipped files.

* :mod:`mdlprune.data.mini`: the procedural benchmark every test, CI run and default notebook uses.
* :mod:`mdlprune.data.real`: the Visual Decathlon (devkit layout), a torchvision "decathlon", ImageNet-to-Sketch.
* :mod:`mdlprune.data.base`: what every benchmark and loader shares (exact, resumable, shardable epochs).
* :mod:`mdlprune.data.crops`: 1 / 5 / 10-crop test transforms and prediction averaging.
* :mod:`mdlprune.data.shipped`: the pretrained backbone and the Finetune baseline in the repository's ``data/``.
"""

from .base import Benchmark, EpochLoader
from .mini import MiniDataset, MiniDecathlon, MiniDomain, TensorLoader, default_root, mini_decathlon
from .shipped import load_backbone, load_baseline

__all__ = ["mini_decathlon", "MiniDecathlon", "MiniDomain", "MiniDataset", "TensorLoader", "default_root",
           "Benchmark", "EpochLoader", "load_backbone", "load_baseline"]  # fmt: skip
