"""The small contract every exporter meets, and the atomic publish step they share.

An exporter writes into a private staging directory; only an artifact that passed
verification is moved into the output directory (``os.replace``, atomic on one
filesystem), so a failed or interrupted run never leaves a half-written file and never
overwrites a good artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitopt.formats import Format
from vitopt.spec import ModelSpec


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
        stem, dot, suffix = self.fmt.file_name.partition(".")
        return self.fmt.file_name if self.precision == "fp32" else f"{stem}.{self.precision}{dot}{suffix}"


@contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """A private directory next to the outputs, removed whatever happens."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".vitopt-staging-", dir=out_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish(artifact: ExportedArtifact, *, out_dir: Path) -> ExportedArtifact:
    """Move verified files into ``out_dir`` atomically, replacing older versions.

    Files go in list order and the main file last, so a reader that finds the main file
    (an OpenVINO .xml) finds its companions (the .bin) already in place.
    """
    ordered = [f for f in artifact.files if f != artifact.main] + [artifact.main]
    moved = [_replace(file, out_dir / file.name) for file in ordered]
    return ExportedArtifact(files=moved, main=out_dir / artifact.main.name, details=artifact.details)


def _replace(source: Path, target: Path) -> Path:
    """``os.replace``; a directory (.mlpackage) cannot replace a non-empty one, so the old one
    is first renamed aside and removed only after the new one is in place."""
    if source.is_dir() and target.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, aside / target.name)
        os.replace(source, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(source, target)
    return target


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a small file (a report) via temp-then-rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be shared
    os.replace(tmp, path)
