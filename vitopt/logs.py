"""Where the traceback of an unexpected error goes, so the console gets one line instead."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import traceback
from pathlib import Path


def log_dir() -> Path:
    """``$VITOPT_LOG_DIR``, else ``~/.cache/vitopt/logs``."""
    return Path(os.environ.get("VITOPT_LOG_DIR") or Path.home() / ".cache" / "vitopt" / "logs")


def write_traceback(err: BaseException, *, command: str) -> Path:
    """The full traceback in a fresh log file; its path (in the temp folder if the log folder is unwritable)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(err))
    for folder in (log_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"vitopt-{command}-{stamp}-", suffix=".log", dir=folder)
        except OSError:
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return Path(name)
    raise err
