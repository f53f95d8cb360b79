"""Killing a two-target compress at any moment leaves the complete earlier run or the complete new one.

Each case starts the real CLI in a subprocess into a folder that holds an earlier run, waits for a
progress line, then sends SIGKILL or SIGINT; the folder must then match its report byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import fast_recipe_dict
from vitopt.run_files import verify_run_folder

pytestmark = [pytest.mark.onnx, pytest.mark.openvino]
TWO_TARGETS = fast_recipe_dict(targets=[{"format": "onnx"}, {"format": "openvino"}])
COMMAND = [sys.executable, "-m", "vitopt.cli", "compress", "vitopt/tiny-vit"]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    """An output folder holding a complete run, copied afresh for each case."""
    root = tmp_path_factory.mktemp("earlier")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TWO_TARGETS))
    subprocess.run([*COMMAND, "--recipe", str(recipe), "--out", str(root / "out")], check=True,
                   capture_output=True)  # fmt: skip
    return root / "out", recipe


def _copy_run(source, dest) -> None:
    subprocess.run(["cp", "-a", str(source), str(dest)], check=True)


def _interrupt(out, recipe, *, after: str, sig: int, delay_s: float = 0.0) -> tuple[int, str]:
    process = subprocess.Popen([*COMMAND, "--recipe", str(recipe), "--out", str(out)], stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, text=True, env={**os.environ, "COLUMNS": "200"},
                               preexec_fn=_default_sigint)  # fmt: skip
    seen = []
    for line in process.stderr:
        seen.append(line)
        if after in line:
            time.sleep(delay_s)
            process.send_signal(sig)
            break
    rest = process.stderr.read()
    return process.wait(timeout=120), "".join(seen) + rest


def _default_sigint() -> None:
    """A job a non-interactive shell starts in the background ignores SIGINT, and so would the Python it
    runs (CI's `make test &`): give the child Ctrl-C's default so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


KILL_POINTS = [  # (progress line, signal, delay after it, whether the new run can have been committed)
    ("done loading model", signal.SIGKILL, 0.0, False),
    ("done target onnx fp32: export", signal.SIGKILL, 0.0, False),
    ("done target openvino fp32: benchmark", signal.SIGKILL, 0.05, True),  # during the commit
    ("done target onnx fp32: export", signal.SIGINT, 0.0, False),
    ("done target openvino fp32: export", signal.SIGINT, 0.0, False),
]


@pytest.mark.parametrize(("after", "sig", "delay_s", "may_commit"), KILL_POINTS,
                         ids=lambda v: str(v).replace(" ", "-"))  # fmt: skip
def test_a_killed_run_leaves_one_complete_run(tmp_path, earlier_run, after, sig, delay_s, may_commit):
    source, recipe = earlier_run
    out = tmp_path / "out"
    _copy_run(source, out)
    before = json.loads((out / "report.json").read_text())
    code, stderr = _interrupt(out, recipe, after=after, sig=sig, delay_s=delay_s)
    report = json.loads((out / "report.json").read_text())
    assert verify_run_folder(out) == [], stderr
    assert {a["target"] for a in report["artifacts"]} == {"onnx", "openvino"}  # a whole run, either one
    if not may_commit:
        assert report == before, stderr
    if sig == signal.SIGINT:
        assert code == 130 and "Traceback" not in stderr, stderr
        assert "still holds the previous run" in stderr and "interrupted" in stderr


def test_the_next_run_removes_what_a_killed_one_left(tmp_path, earlier_run):
    source, recipe = earlier_run
    out = tmp_path / "out"
    _copy_run(source, out)
    _interrupt(out, recipe, after="done target onnx fp32: export", sig=signal.SIGKILL)
    assert list(tmp_path.glob(".out.next-*"))  # SIGKILL runs no clean-up
    next_run = subprocess.run([*COMMAND, "--recipe", str(recipe), "--out", str(out)], capture_output=True, text=True)
    assert next_run.returncode == 0, next_run.stderr
    assert verify_run_folder(out) == [] and not list(tmp_path.glob(".out.next-*"))
    assert json.loads((out / "report.json").read_text())["created"] >= json.loads(
        (source / "report.json").read_text())["created"]
