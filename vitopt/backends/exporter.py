"""The small contract every exporter meets: a module in, files in a staging directory out.

Publishing those files (atomically, only once verified) is ``vitopt.publish``'s job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vitopt.spec import ModelSpec

if TYPE_CHECKING:
    from vitopt.formats import Format


@dataclass
class ExportedArtifact:
    """Files written for one target, still in staging until published."""

    files: list[Path]
    main: Path
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(path_size(f) for f in self.files)


def path_size(path: Path) -> int:
    """Bytes in a file, or in every file under a directory (a Core ML .mlpackage)."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


class Exporter(ABC):
    """Turns a module into an artifact for one format and precision."""

    def __init__(
        self, *, fmt: Format, precision: str, options: dict[str, Any], provenance: dict[str, str] | None = None
    ) -> None:
        self.fmt = fmt
        self.precision = precision
        self.options = self.Options.model_validate(options)
        self.provenance = dict(provenance or {})  # e.g. the recipe's name, stored in artifact metadata

    Options: Any  # a pydantic model of this exporter's options, set by subclasses

    @abstractmethod
    def export(
        self, module: nn.Module, *, spec: ModelSpec, staging: Path, calibration: torch.Tensor
    ) -> ExportedArtifact:
        """Write the artifact under ``staging``; ``calibration`` holds real images."""

    def artifact_name(self) -> str:
        return self.fmt.artifact_name(self.precision)
