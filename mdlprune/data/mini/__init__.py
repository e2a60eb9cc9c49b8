"""The embedded, procedurally generated mini-decathlon (METHOD §9): a broad source domain and five targets."""

from .benchmark import MiniDataset, MiniDecathlon, MiniDomain, TensorLoader, default_root, mini_decathlon
from .domains import GENERATOR_VERSION

__all__ = ["mini_decathlon", "MiniDecathlon", "MiniDomain", "MiniDataset", "TensorLoader", "default_root",
           "GENERATOR_VERSION"]  # fmt: skip
