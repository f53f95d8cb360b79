"""One training loop for supervised training and knowledge distillation, single process or
under ``torchrun`` (DDP). Pruning passes call the same :func:`fit` for their fine-tune."""

from vitopt.train.config import TrainConfig
from vitopt.train.loop import fit

__all__ = ["TrainConfig", "fit"]
