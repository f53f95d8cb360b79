"""The target step runs forward: artifacts, then the baselines they need, then measurements."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from torch import nn

from tests.conftest import fast_recipe_dict
from vitopt.formats import FORMATS
from vitopt.measure import baseline_target
from vitopt.passes import PASSES, ModelPass, PassResult
from vitopt.pipeline import compress
from vitopt.recipe import Target, parse_recipe

TARGETS = [(n, p) for n in FORMATS.names() for p in (None, *FORMATS.get(n).precisions)]  # None: the default


@pytest.mark.parametrize(("name", "precision"), TARGETS)
def test_a_baseline_is_the_fp32_export_of_every_format(name, precision):
    target = Target(format=name) if precision is None else Target(format=name, precision=precision)
    baseline = baseline_target(target)
    # Core ML's default precision is fp16: a baseline built as Target(format="coreml") would be fp16.
    assert baseline.precision == "fp32" and baseline.format == name and baseline.options == target.options


class DropLastBlock(ModelPass):
    """A real change to the model, so every artifact needs a separately exported baseline."""

    name = "test-drop-last-block"

    def run(self, module, *, context):
        module.blocks = nn.Sequential(*list(module.blocks)[:1])
        return PassResult(module=module)


@pytest.fixture
def drop_pass():
    PASSES.add(DropLastBlock.name, DropLastBlock)
    yield DropLastBlock
    PASSES._entries.pop(DropLastBlock.name)


@pytest.mark.onnx
@pytest.mark.openvino
def test_baselines_are_exported_after_every_artifact_and_before_any_measurement(tiny_vit, drop_pass, tmp_path):
    steps = []

    @contextmanager
    def record(description: str):
        steps.append(description)
        yield

    targets = [{"format": "onnx"}, {"format": "openvino"}, {"format": "openvino", "precision": "fp16"}]
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": drop_pass.name}], targets=targets))
    report = compress(model=tiny_vit, recipe=recipe, out_dir=tmp_path / "out", step=record)
    kinds = [s.split(": ")[-1] if s.startswith("target ") else s.split(" (")[0] for s in steps]
    first_measure = kinds.index("benchmark, evaluate")
    assert kinds[first_measure - 1] == "exporting the unmodified model as latency baseline"
    assert kinds.count("export, verify") == 3 and kinds.index("export, verify") < first_measure
    assert "(onnx, openvino)" in steps[first_measure - 1], "one baseline per format, not per target"
    assert [row["status"] for row in report["artifacts"]] == ["ok", "ok", "ok"]
    assert all(row["baseline_latency_ms"]["runs"] >= 5 for row in report["artifacts"])
