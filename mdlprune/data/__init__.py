"""Data: the embedded offline mini-decathlon, real benchmark loaders, multi-crop testing.

* :func:`mini_decathlon`: the procedural benchmark every test, CI run and default notebook uses.
* :mod:`mdlprune.data.decathlon`: the Visual Decathlon from its official devkit layout.
* :mod:`mdlprune.data.presets`: a torchvision "decathlon" for Colab, and ImageNet-to-Sketch.
* :mod:`mdlprune.data.crops`: 1 / 5 / 10-crop test transforms and prediction averaging.
"""

from .mini import MiniDataset, MiniDecathlon, MiniDomain, TensorLoader, default_root, mini_decathlon, quick_mode

__all__ = ["mini_decathlon", "MiniDecathlon", "MiniDomain", "MiniDataset", "TensorLoader", "default_root", "quick_mode"]
