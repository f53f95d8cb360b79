"""Reproducible, safe zip archives.

Reproducible: entries sorted by name, every timestamp fixed (1980-01-01, zip's epoch), permissions fixed,
one compression level, no extra fields; the same inputs give byte-identical archives. Safe: a member name
is relative, has no ``..`` and no backslash; a file is read only if it resolves inside the folder it is
taken from (a symlink pointing out is refused); the archive appears atomically.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath

from vitopt.errors import InputError

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def safe_name(name: str) -> str:
    """``name`` if it is a safe relative member name, else one line and exit 2."""
    path = PurePosixPath(name)
    if not name or "\\" in name or path.is_absolute() or ".." in path.parts or name.startswith("/"):
        raise InputError(f"unsafe archive member name {name!r}", hint="names must be relative, without '..'")
    return str(path)


def files_under(root: Path, *, prefix: str) -> dict[str, Path]:
    """Every file below ``root`` (a file or a folder such as a .mlpackage) as ``prefix/...`` -> path,
    refusing anything that resolves outside ``root``."""
    base = root.resolve()
    if root.is_file():
        return {safe_name(prefix): _inside(root, base.parent)}
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or path.is_file():
            resolved = _inside(path, base)
            if resolved.is_file():
                found[safe_name(f"{prefix}/{path.relative_to(root).as_posix()}")] = resolved
    return found


def _inside(path: Path, base: Path) -> Path:
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise InputError(f"{str(path)!r} points outside {str(base)!r}", hint="bundles never follow links out")
    return resolved


def write_zip(members: dict[str, bytes], *, dest: Path) -> None:
    """``members`` (name -> content) into ``dest``, reproducibly and atomically."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            for name in sorted(members):
                info = zipfile.ZipInfo(safe_name(name), date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                info.create_system = 3  # unix, whatever OS writes it
                archive.writestr(info, members[name], compresslevel=6)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
