"""Staged, atomic publishing: an artifact or report appears whole or not at all.

An exporter writes into a private staging directory; only an artifact that passed
verification is moved into the output directory (``os.replace``, atomic on one
filesystem), so a failed or interrupted run never leaves a half-written file and never
overwrites a good artifact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vitopt.backends.exporter import ExportedArtifact


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
    moved = [replace_path(file, out_dir / file.name) for file in ordered]
    return ExportedArtifact(files=moved, main=out_dir / artifact.main.name, details=artifact.details)


def replace_path(source: Path, target: Path) -> Path:
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
