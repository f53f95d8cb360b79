"""One exception hierarchy for vitopt.

Every error a user can cause or meet derives from :class:`VitoptError`. The CLI maps
``InputError`` (bad input: exit code 2) and ``RunError`` (a run that failed: exit code 1)
to one clear line with a hint; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("vitopt")


class VitoptError(Exception):
    """Base class of every error vitopt raises on purpose."""

    exit_code = 1
    label = "error"  # how the CLI introduces the message

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class InputError(VitoptError):
    """The user gave something vitopt cannot use: exit code 2."""

    exit_code = 2


class UnknownModelError(InputError):
    """A model name that is neither a timm model, a vitopt zoo name, a file nor a factory."""


class CheckpointError(InputError):
    """A checkpoint that is missing, corrupt, untrusted or does not fit the model."""


class RecipeError(InputError):
    """A recipe file that is missing, malformed or names unknown passes or keys."""


class DataError(InputError):
    """Image data that is missing, empty or not readable as images."""


class MissingBackendError(InputError):
    """An optional backend package (an extra) is not installed."""


class UnsupportedOptionError(InputError):
    """An option or combination of options vitopt does not support."""


class RunError(VitoptError):
    """A run that started with good input but failed: exit code 1."""


class ExportError(RunError):
    """Turning a model into an artifact failed."""


class VerificationError(RunError):
    """An artifact does not match the model it came from within tolerance."""


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean ...?' hint for a mistyped name, or None when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


def one_line(err: BaseException, *, limit: int = 300, with_type: bool = False) -> str:
    """An exception as one line of at most ``limit`` characters: white space folded (backends put
    C++ stack frames and blank lines in their messages), cut with an ellipsis."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = f"{type(err).__name__}: {text}" if with_type else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_that_works(attempts: Sequence[tuple[str, Callable[[], T]]], *, what: str,
                     error: type[VitoptError]) -> tuple[str, T]:  # fmt: skip
    """Run ``attempts`` (name, thunk) in order and return (name, result) of the first that succeeds.

    Converters fail in many ways (each backend raises its own types), so any exception moves on
    to the next attempt; if all fail, ``error`` lists every attempt's cause and chains the last.
    """
    failures, last = [], None
    for name, attempt in attempts:
        try:
            return name, attempt()
        except Exception as err:
            failures.append(f"{name}: {one_line(err, with_type=True)}")
            log.info("%s via %s failed: %s", what, name, failures[-1])
            last = err
    raise error(f"{what} failed: " + " | ".join(failures)) from last
