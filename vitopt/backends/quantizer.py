"""The contract every backend's ``quantize.py`` meets: an exported float artifact in, a lower-precision one out.

The exporter writes the float model (``base_precision``); the quantiser rewrites it for one
scheme (``int8``: weights and activations, calibrated on real images; ``int8-weights``: weights
only; ...), keeping the op groups and modules the recipe names in float. Where the runtime cannot
run here (Core ML on Linux), ``simulate`` gives a PyTorch model with the same weight compression so
accuracy can still be measured.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from vitopt.backends.exporter import ExportedArtifact

if TYPE_CHECKING:
    from vitopt.recipe import QuantizeSettings

Labelled = tuple[torch.Tensor, torch.Tensor]  # preprocessed images [N, C, H, W], class indices [N]


class Quantizer(ABC):
    schemes: ClassVar[tuple[str, ...]]  # the precisions this quantiser produces
    base_precision: ClassVar[str] = "fp32"  # what the exporter writes before quantisation
    uses_labels: ClassVar[bool] = False  # whether ``labelled`` images change what it does (accuracy control)

    def __init__(self, *, settings: QuantizeSettings) -> None:
        self.settings = settings

    @abstractmethod
    def quantize(self, artifact: ExportedArtifact, *, scheme: str, calibration: torch.Tensor, dest: Path,
                 labelled: Labelled | None = None) -> ExportedArtifact:  # fmt: skip
        """Write ``artifact`` quantised by ``scheme`` to ``dest`` (a file path with the artifact's suffix).
        ``labelled`` (images, labels) from the run's --data lets a quantiser control accuracy."""

    def simulate(self, module: nn.Module, *, scheme: str) -> nn.Module | None:
        """A PyTorch model computing what the quantised artifact computes, where one can be built."""
        return None


@contextlib.contextmanager
def quiet_logger(name: str = "") -> Iterator[None]:
    """Hold a library's logger (default: the root logger) at ERROR: quantisers log per-call advice and
    per-tensor progress that would bury vitopt's own progress lines; the report records what ran."""
    # Children set their own levels (coremltools' k-means logger is at INFO), so each is held, not just the parent.
    names = [name, *(n for n in logging.root.manager.loggerDict if name and n.startswith(f"{name}."))]
    loggers = [logging.getLogger(n) for n in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def matches_module(name: str, globs: list[str]) -> bool:
    """Whether a module path (or a weight named after one) falls under one of the recipe's globs:
    "head" matches "head" and "head.weight"; "patch_embed*" matches "patch_embed.proj"."""
    return any(fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(name, f"{g}.*") for g in globs)
