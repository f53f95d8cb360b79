"""``vitopt bundle verify``: an archive is checked before anything in it is trusted. Unsafe or malformed
archives (path traversal, duplicate names, oversized or over-compressed members, no manifest) are input
errors (exit 2); a file that does not match its manifest hash is a failed verification (exit 1)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from vitopt.bundle.archive import safe_name
from vitopt.bundle.contents import MANIFEST, SCHEMA
from vitopt.errors import InputError, VerificationError

MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, MAX_RATIO = 2 * 2**30, 4 * 2**30, 200


def verify_bundle(path: Path) -> dict:
    """The manifest of a sound bundle; raises otherwise."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{str(path)!r} is not a readable zip archive: {err}") from err
    with archive:
        infos = archive.infolist()
        _check_members(infos)
        manifest = _manifest(archive)
        _check_hashes(archive, manifest, names={i.filename for i in infos})
    return manifest


def _check_members(infos: list[zipfile.ZipInfo]) -> None:
    names = [i.filename for i in infos]
    for name in names:
        safe_name(name)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"the archive holds duplicate members: {', '.join(duplicates)}")
    for info in infos:
        if info.file_size > MAX_MEMBER_BYTES or info.file_size > MAX_RATIO * max(info.compress_size, 1) + 2**20:
            raise InputError(f"member {info.filename!r} is oversized ({info.file_size} bytes unpacked from "
                             f"{info.compress_size}): refused as a possible zip bomb")  # fmt: skip
    if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
        raise InputError("the archive unpacks to more than 4 GiB: refused")


def _manifest(archive: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise InputError(f"the archive has no {MANIFEST}: not a vitopt bundle") from None
    except ValueError as err:
        raise InputError(f"{MANIFEST} is not valid JSON: {err}") from err
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("schema") != SCHEMA:
        raise InputError(f"{MANIFEST} does not follow the {SCHEMA} schema")
    return manifest


def _check_hashes(archive: zipfile.ZipFile, manifest: dict, *, names: set[str]) -> None:
    listed = set(manifest["files"])
    unlisted = sorted(names - listed - {MANIFEST})
    if unlisted:
        raise VerificationError(f"files not in the manifest: {', '.join(unlisted)}")
    for name, entry in sorted(manifest["files"].items()):
        if name == MANIFEST:
            continue
        if name not in names:
            raise VerificationError(f"{name!r} is listed in the manifest but missing from the archive")
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        if digest != entry.get("sha256"):
            raise VerificationError(f"{name!r} does not match its manifest hash (tampered or damaged)")
