"""Training: the configuration, the method table, the round-robin trainer, checkpoints, distributed runs.

=================  ==========================================================================================
``config``         :class:`RunConfig` and its typed sections; every default in one place (METHOD §5)
``methods``        :data:`METHODS`: Feature, Finetune, BA², Ours as one table of what each trains
``schedule``       which domains each step of a round trains on
``trainer``        :class:`Trainer`: CE + L_B + L_PS, the dual steps, exact resume
``optim``          lazy Adam for the switches
``recalibrate``    BatchNorm statistics recomputed with the final switches
``history``        what a run logs, and its plots
``checkpoint``     atomic saves; loading with ``weights_only=True`` and an allowlist
``distributed``    ``torchrun`` / DistributedDataParallel, synchronised BatchNorm
=================  ==========================================================================================
"""

from .config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config, quick_mode
from .methods import METHODS, Method, get_method
from .recalibrate import recalibrate_batchnorm
from .trainer import Trainer

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "load_config", "quick_mode", "Method", "METHODS",
           "get_method", "Trainer", "recalibrate_batchnorm"]  # fmt: skip
