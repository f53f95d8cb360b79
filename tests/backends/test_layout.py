"""The layout contract: one folder per backend, no backend reaching into another's runner, and
every metadata key defined once (in ``vitopt.backends.metadata``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vitopt.formats import FORMATS, RUNTIMES, format_for_path

PACKAGE = Path(__file__).resolve().parents[2] / "vitopt"
BACKENDS = PACKAGE / "backends"


def _sources(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


@pytest.mark.parametrize("name", FORMATS.names())
def test_each_format_lives_in_its_own_backend_folder(name):
    fmt = FORMATS.get(name)
    for path in filter(None, (fmt.exporter, fmt.probe, fmt.validator, RUNTIMES.get(fmt.runtime).runner)):
        module = path.split(":")[0]
        assert module.startswith("vitopt.backends."), path
    assert fmt.exporter.startswith(f"vitopt.backends.{name}.")


def test_no_backend_imports_another_backends_runner():
    for source in _sources(BACKENDS):
        own = source.parent.name
        for other in re.findall(r"vitopt\.backends\.(\w+)\.runner", source.read_text()):
            assert other == own, f"{source.relative_to(PACKAGE)} imports the {other} runner"


def test_the_spec_metadata_key_is_written_in_one_place():
    hits = [str(p.relative_to(PACKAGE)) for p in _sources(PACKAGE) if '"vitopt.spec"' in p.read_text()]
    assert hits == ["backends/metadata.py"]


def test_runtime_names_are_defined_only_in_the_format_table():
    for source in _sources(BACKENDS):
        assert not re.search(r"^\s+runtime = \"", source.read_text(), re.M), source


@pytest.mark.parametrize(("file_name", "expected"), [
    ("model.onnx", "onnx"), ("model.trt.onnx", "tensorrt"), ("model.int8.trt.onnx", "tensorrt"),
    ("model.xml", "openvino"), ("model.fp16.xml", "openvino"), ("model.mlpackage", "coreml"),
    ("exported/resnet.onnx", "onnx"), ("notes.txt", None),
])  # fmt: skip
def test_the_longest_matching_file_ending_names_the_format(file_name, expected):
    fmt = format_for_path(Path(file_name))
    assert (fmt.name if fmt else None) == expected
