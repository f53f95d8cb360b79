"""Property: mutated recipes and options never produce a traceback, always end with exit 0 or 2 (one
line saying why), and a failed run never changes the output folder it was pointed at."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import fast_recipe_dict
from vitopt.cli import app
from vitopt.run_files import file_hashes, verify_run_folder

pytestmark = [pytest.mark.onnx]
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(-1, 2, allow_nan=False),
                       st.text(max_size=8), st.lists(st.integers(0, 3), max_size=2))  # fmt: skip
PASSES = st.lists(st.sampled_from([{"name": "reparam"}, {"name": "prune"}, {"name": "bogus"}, "reparam",
                                    {"name": "reparam", "options": {"x": 1}}]), max_size=2)  # fmt: skip
TARGETS = st.lists(st.fixed_dictionaries({"format": st.sampled_from(["onnx", "openvino", "onix", ""]),
                                          "precision": st.sampled_from(["fp32", "fp16", "int3", "auto"])}),
                   max_size=2)  # fmt: skip
FIELDS = {  # (path into the recipe, values worth trying there)
    ("version",): st.one_of(st.just(1), ANY_SCALAR),
    ("name",): ANY_SCALAR,
    ("passes",): st.one_of(PASSES, ANY_SCALAR),
    ("targets",): st.one_of(TARGETS, ANY_SCALAR),
    ("verify", "n_images"): ANY_SCALAR,
    ("verify", "max_abs_diff"): ANY_SCALAR,
    ("bench", "min_runs"): ANY_SCALAR,
    ("bench", "threads"): ANY_SCALAR,
    ("unknown_key",): ANY_SCALAR,
}
OPTIONS = st.lists(st.sampled_from([
    ["--threads", "0"], ["--threads", "x"], ["--eval-limit", "-1"], ["--input-size", "3,16"],
    ["--input-size", "3,24,24"], ["--mean", "a,b"], ["--std", "0,0,0"], ["--std", "0.5"], ["--model-arg", "depth=abc"],
    ["--model-arg", "bogus_kw=1"], ["--model-arg", "noequals"], ["--checkpoint", "missing.pt"], ["--target", "onnx"],
    ["--target", "tensorflow"], ["--eval-data", "nowhere"], ["--data", "nowhere.tar"], ["--resume"],
]), max_size=2)  # fmt: skip


@st.composite
def recipes(draw) -> str:
    recipe = fast_recipe_dict()
    for path in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        holder = recipe
        for key in path[:-1]:
            holder = holder.setdefault(key, {}) if isinstance(holder.get(key, {}), dict) else {}
        if precision_is_slow(value := draw(FIELDS[path])):
            continue
        holder[path[-1]] = value
    return draw(st.text(max_size=40)) if draw(st.integers(0, 4)) == 0 else yaml.safe_dump(recipe)  # or any text


def precision_is_slow(value) -> bool:
    """``auto`` runs quantisers and a selection: right, but minutes per example; its own tests cover it."""
    return isinstance(value, list) and any(isinstance(t, dict) and t.get("precision") == "auto" for t in value)


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("earlier") / "out"
    recipe = out.parent / "fast.yaml"
    recipe.write_text(yaml.safe_dump(fast_recipe_dict()))
    result = CliRunner().invoke(app, ["compress", "vitopt/tiny-vit", "--recipe", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(recipe_text=recipes(), options=OPTIONS)
def test_bad_recipes_and_options_get_one_line_and_change_nothing(earlier_run, tmp_path_factory, recipe_text,
                                                                  options):  # fmt: skip
    recipe = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    recipe.write_text(recipe_text)
    before = file_hashes(earlier_run)
    args = ["compress", "vitopt/tiny-vit", "--recipe", str(recipe), "--out", str(earlier_run)]
    result = CliRunner().invoke(app, args + [a for option in options for a in option], catch_exceptions=False)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert file_hashes(earlier_run) == before
        assert _error_lines(result.output) <= 2, result.output  # "error: ..." and its hint
    else:
        assert verify_run_folder(earlier_run) == []


def _error_lines(output: str) -> int:
    """Lines of vitopt's error message (a usage error from the option parser is framed by Click instead)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    return 0 if start is None else len(lines) - start
