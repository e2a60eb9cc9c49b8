"""Real benchmarks behind the trainer's loader interface (METHOD §9): the Visual Decathlon from its devkit,
a torchvision "decathlon" for Colab, ImageNet-to-Sketch from ImageFolders."""

from .decathlon import DECATHLON_DOMAINS, DatasetNotFoundError, DecathlonDataset
from .loaders import DatasetLoader
from .presets import RealBenchmark, decathlon_devkit, imagenet_to_sketch, torchvision_decathlon

__all__ = ["DECATHLON_DOMAINS", "DatasetNotFoundError", "DecathlonDataset", "DatasetLoader", "RealBenchmark",
           "decathlon_devkit", "imagenet_to_sketch", "torchvision_decathlon"]  # fmt: skip
