"""Putting a finished run folder in place of the previous one in a single step.

Linux's ``renameat2(RENAME_EXCHANGE)`` swaps two directory entries atomically; Python exposes no
wrapper, so it is called through libc. Where the filesystem or kernel lacks it (EINVAL, ENOSYS; macOS),
two renames do the job with a short window in which OUT is absent: the earlier run then sits complete
in ``.OUT.old-*`` and the next run into OUT puts it back before doing anything else.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("vitopt")
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def swap_in(new: Path, out: Path) -> None:
    """Make ``new`` the folder at ``out``; the previous ``out`` ends up at ``new``'s path (or nowhere)."""
    if not out.exists():
        os.rename(new, out)
    elif not _exchange(new, out):
        _two_renames(new, out)


def _exchange(a: Path, b: Path) -> bool:
    """True when the kernel swapped ``a`` and ``b``; False when it cannot here."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):  # glibc older than 2.28
        return False
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _two_renames(new: Path, out: Path) -> None:
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent)) / "run"
    os.rename(out, aside)
    os.rename(new, out)
    os.rename(aside, new)  # the caller removes ``new``'s path: now the previous run
    os.rmdir(aside.parent)


def restore_interrupted_swap(out: Path) -> None:
    """After a kill between the two renames: OUT is missing and the earlier run waits in ``.OUT.old-*``."""
    if out.exists():
        return
    for holder in sorted(out.parent.glob(f".{out.name}.old-*")):
        if (holder / "run").is_dir():
            os.rename(holder / "run", out)
            log.warning("put back %s: a run was interrupted while replacing it", out)
            return
