"""What a report says about the files beside it: a sha256 per file, checked when an artifact is opened."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from vitopt.errors import InputError

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(folder: Path, *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``folder`` (relative POSIX path -> sha256), sorted; top-level ``exclude`` left out."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in exclude)
    return {p.relative_to(folder).as_posix(): sha256_of(p) for p in files}


def relocate(value: Any, *, src: Path, dst: Path) -> Any:
    """``value`` with every path string under ``src`` rewritten to the same place under ``dst``."""
    if isinstance(value, dict):
        return {k: relocate(v, src=src, dst=dst) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, src=src, dst=dst) for v in value]
    prefix = os.fspath(src)
    if isinstance(value, str) and (value == prefix or value.startswith(prefix + os.sep)):
        return os.fspath(dst) + value[len(prefix):]
    return value


def check_against_report(path: str | Path) -> None:
    """Refuse an artifact from a compress output folder whose bytes are not the ones its report recorded."""
    path = Path(path).absolute()
    found = _report_listing(path)
    if found is None:
        return
    root, hashes = found
    members = _members(path)
    for member in members:
        expected = hashes.get(member.relative_to(root).as_posix())
        if expected is not None and sha256_of(member) != expected:
            raise InputError(f"{str(member)!r} is not the file {str(root / 'report.json')!r} describes "
                             "(its sha256 differs): it changed after the run",
                             hint="re-run compress, or copy the run folder whole")  # fmt: skip


def _members(path: Path) -> list[Path]:
    """The files that make up an artifact: a folder's tree (.mlpackage), or a file with the weights an
    OpenVINO .xml points to."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    weights = path.with_suffix(".bin")
    return [path, weights] if path.suffix == ".xml" and weights.is_file() else [path]


def _report_listing(path: Path) -> tuple[Path, dict[str, str]] | None:
    """(the run folder, its file hashes) for the nearest report.json above ``path`` that lists ``path``."""
    for folder in list(path.parents)[:2]:  # OUT/model.onnx, OUT/candidates/model.int8.onnx
        if (folder / "report.json").is_file():
            try:
                hashes = json.loads((folder / "report.json").read_text()).get("files")
            except (OSError, ValueError, AttributeError):
                return None
            return (folder, hashes) if isinstance(hashes, dict) else None  # reports before 0.x list no hashes
    return None


def verify_run_folder(folder: Path) -> list[str]:
    """What differs between a run folder and its report's file list (empty: they match)."""
    report = json.loads((folder / "report.json").read_text())
    listed, present = report.get("files") or {}, file_hashes(folder, exclude=("report.json", "report.md"))
    problems = [f"missing: {name}" for name in listed if name not in present]
    problems += [f"not in the report: {name}" for name in present if name not in listed]
    problems += [f"sha256 differs: {name}" for name in listed if name in present and present[name] != listed[name]]
    return problems
