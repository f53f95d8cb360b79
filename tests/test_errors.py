"""The two error helpers every backend uses: one-line messages, and the first converter that works."""

from __future__ import annotations

import pytest

from vitopt.errors import ExportError, first_that_works, one_line


def test_one_line_folds_white_space_and_cuts_with_an_ellipsis():
    err = RuntimeError("line one\n\n   at frame 1\n\tat frame 2 " + "x" * 500)
    text = one_line(err, limit=60)
    assert "\n" not in text and "  " not in text and len(text) == 60 and text.endswith("\u2026")
    assert one_line(ValueError("short"), with_type=True) == "ValueError: short"
    assert one_line(KeyError()) == "KeyError"


def test_first_that_works_returns_the_first_success_without_running_the_rest():
    ran = []

    def fail():
        ran.append("a")
        raise TypeError("no")

    def succeed():
        ran.append("b")
        return 42

    def never():
        ran.append("c")
        return 0

    assert first_that_works([("a", fail), ("b", succeed), ("c", never)], what="export", error=ExportError) == ("b", 42)
    assert ran == ["a", "b"]


def test_when_every_attempt_fails_each_cause_is_kept_and_the_last_is_chained():
    def fail(message: str, kind: type[Exception]):
        def attempt():
            raise kind(message)

        return attempt

    attempts = [("dynamo", fail("first\nproblem", ValueError)), ("torchscript", fail("second", RuntimeError))]
    with pytest.raises(ExportError) as info:
        first_that_works(attempts, what="ONNX export", error=ExportError)
    expected = "ONNX export failed: dynamo: ValueError: first problem | torchscript: RuntimeError: second"
    assert str(info.value) == expected
    assert isinstance(info.value.__cause__, RuntimeError)
