"""A compress output folder that always holds exactly one run's files and a report describing them.

A run writes everything (artifacts, ``candidates/``, ``rejected/``, ``pytorch/``, the report) into a
sibling folder ``.OUT.next-XXXX``; committing records each file's sha256 in the report and then swaps
that folder for ``OUT`` in one ``renameat2(RENAME_EXCHANGE)`` system call, so a reader, a Ctrl-C or a
SIGKILL sees either the complete earlier run or the complete new one. A lock file beside the folder
keeps two runs from writing it at once; whoever holds the lock removes what killed runs left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vitopt.errors import InputError
from vitopt.run_files import file_hashes, relocate
from vitopt.run_swap import restore_interrupted_swap, swap_in

log = logging.getLogger("vitopt")
REPORT_FILES = ("report.json", "report.md")
_LEFTOVER_PREFIXES = (".next-", ".old-")  # after ".OUT": what an interrupted run leaves beside OUT


def check_output_folder(out_dir: str | Path) -> Path:
    """Refuse, before any model is loaded, an ``--out`` vitopt could not (or should not) replace whole."""
    out = Path(out_dir).absolute()
    _refuse_cwd(out)
    _refuse_files_in_the_way(out)
    if out.is_dir() and any(out.iterdir()) and not is_run_folder(out):
        raise InputError(f"--out {str(out_dir)!r} holds files vitopt did not write (no vitopt report.json)",
                         hint="compress replaces its output folder whole: pick a new or empty folder")  # fmt: skip
    _require_writable(existing_ancestor(out.parent))
    return out


def is_run_folder(path: Path) -> bool:
    """A folder an earlier compress wrote: its report.json says so."""
    try:
        return json.loads((path / "report.json").read_text()).get("schema", "").startswith("vitopt.report/")
    except (OSError, ValueError, AttributeError):
        return False


def _refuse_cwd(out: Path) -> None:
    cwd = Path.cwd().absolute()
    if out == cwd or out in cwd.parents or out.parent == out:
        what = "the working folder" if out == cwd else "the root" if out.parent == out else "above the working folder"
        raise InputError(f"--out {str(out)!r} is {what}: compress replaces its output folder whole",
                         hint="give the run a folder of its own, e.g. --out vitopt-out")  # fmt: skip


def _refuse_files_in_the_way(out: Path) -> None:
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {str(out)!r} cannot be a folder: {str(path)!r} is a file",
                             hint="pick a folder path for --out")  # fmt: skip


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest parent that exists (where a new folder or file would be created)."""
    while not path.exists():
        path = path.parent
    return path


def _require_writable(folder: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in {str(folder)!r} (permission denied)", hint="pick a writable --out")


def check_free_space(out: Path, *, needed_bytes: int) -> None:
    """Refuse a run whose artifacts cannot fit: cheaper to say now than after an hour of passes."""
    free = shutil.disk_usage(existing_ancestor(out)).free
    if free < needed_bytes:
        raise InputError(f"not enough free space for --out {str(out)!r}: about {needed_bytes / 2**20:.0f} MiB "
                         f"needed, {free / 2**20:.0f} MiB free",
                         hint="free some space or pick another --out")  # fmt: skip


@dataclass
class RunFolder:
    """Where one run writes (``path``) and the folder it replaces when committed (``out``)."""

    out: Path
    path: Path
    committed: bool = False

    def commit(self, report: dict[str, Any], *, write_report, failed: bool = False) -> dict[str, Any]:
        """Hash every file, write the report with the hashes and final paths, then swap the folder in.

        A ``failed`` run (an artifact failed export or verification) never replaces a previous run: it goes
        to ``OUT.failed`` beside it, so the good artifacts stay where they were and the failure is readable.
        """
        dest = self.destination(failed=failed)
        report = relocate(report, src=self.path, dst=dest) | {"output_folder": str(dest)}
        report["files"] = file_hashes(self.path, exclude=REPORT_FILES)
        _hash_artifact_rows(report, out=dest)
        write_report(report, out_dir=self.path)
        swap_in(self.path, dest)
        self.committed = True
        return report

    def destination(self, *, failed: bool) -> Path:
        if not failed or not is_run_folder(self.out):
            return self.out
        dest = self.out.parent / f"{self.out.name}.failed"
        if dest.exists() and not is_run_folder(dest):
            raise InputError(f"{str(dest)!r} holds files vitopt did not write: the failed run cannot go there",
                             hint="move that folder away and re-run")  # fmt: skip
        log.warning("an artifact failed: %s keeps the previous run; this run is in %s", self.out, dest)
        return dest


def _hash_artifact_rows(report: dict[str, Any], *, out: Path) -> None:
    for row in report.get("artifacts", []):
        path = Path(row["path"]) if row.get("path") else None
        name = path.relative_to(out).as_posix() if path and path.is_relative_to(out) else None
        if name in report["files"]:
            row["sha256"] = report["files"][name]


@contextlib.contextmanager
def run_folder(out_dir: str | Path, *, active: bool = True) -> Iterator[RunFolder | None]:
    """The run's private folder beside ``out_dir``; removed unless committed. ``active=False`` (a torchrun
    rank that does not write) yields None and touches nothing."""
    if not active:
        yield None
        return
    out = check_output_folder(out_dir)
    with _locked(out):
        restore_interrupted_swap(out)
        _remove_leftovers(out)
        folder = RunFolder(out=out, path=_private_folder(out))
        try:
            yield folder
        except BaseException:
            _say_what_remains(out)
            raise
        finally:
            shutil.rmtree(folder.path, ignore_errors=True)  # after a commit: the previous run's files


def _private_folder(out: Path) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f".{out.name}.next-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; once swapped in, it is the user's output folder
    return path


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[IO]:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another vitopt run is writing {str(out)!r}",
                             hint="wait for it to finish, or pick another --out") from None  # fmt: skip
        yield handle


def _remove_leftovers(out: Path) -> None:
    """Folders of killed runs (we hold the lock: nobody else is using them), and staging folders older
    versions of vitopt kept inside OUT."""
    beside = [p for p in out.parent.glob(f".{out.name}.*") if p.name.startswith(_leftover_names(out))]
    inside = list(out.glob(".vitopt-staging-*")) if out.is_dir() else []
    for path in beside + inside:
        shutil.rmtree(path, ignore_errors=True)
    if beside or inside:
        log.info("removed %d folder(s) an interrupted run left beside %s", len(beside + inside), out)


def _leftover_names(out: Path) -> tuple[str, ...]:
    return tuple(f".{out.name}{suffix}" for suffix in _LEFTOVER_PREFIXES)


def _say_what_remains(out: Path) -> None:
    if is_run_folder(out):
        log.warning("%s still holds the previous run, unchanged", out)
    else:
        log.warning("nothing was written to %s", out)
