"""Recipes: the shipped baseline, errors that name their line, pass options, CLI overrides."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from vitopt.errors import InputError, RecipeError
from vitopt.formats import FORMATS, Format
from vitopt.passes import PASSES, ModelPass, PassOptions
from vitopt.recipe import Recipe, load_recipe, parse_recipe
from vitopt.recipes import SHIPPED_DIR, resolve_recipe, shipped_recipes


class _ScaleOptions(PassOptions):
    factor: float = 1.0
    blocks: int = 2


class _ScalePass(ModelPass):
    name = "test-scale"
    Options = _ScaleOptions


class _FakeExporterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    quality: int = 1


class _FakeExporter:
    """Only what a recipe needs of an exporter: its Options model."""

    Options = _FakeExporterOptions


@pytest.fixture
def scale_pass():
    PASSES.add(_ScalePass.name, _ScalePass)
    yield _ScalePass
    PASSES._entries.pop(_ScalePass.name)


@pytest.fixture
def fake_format():
    FORMATS.add("fake", Format(
        name="fake", exporter=f"{__name__}:_FakeExporter", runtime="none", extra="none",
        precisions=("fp32", "fp16"), file_name="model.fake",
    ))  # fmt: skip
    yield "fake"
    FORMATS._entries.pop("fake")


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _error(tmp_path, text: str) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path=_write(tmp_path, text))
    return info.value


def test_baseline_is_shipped_and_a_no_op():
    assert {"baseline", "default", "reparam"} <= set(shipped_recipes())
    recipe = resolve_recipe(recipe="baseline")
    assert recipe.name == "baseline"
    assert [(t.format, t.precision) for t in recipe.targets] == [("onnx", "fp32")]
    assert recipe.passes == []


def test_default_recipe_folds_first():
    recipe = resolve_recipe(recipe=None)
    assert recipe.name == "default"
    assert [p.name for p in recipe.passes][:1] == ["reparam"]
    for name in shipped_recipes():
        passes = [p.name for p in resolve_recipe(recipe=name).passes]
        assert passes == [] or passes[0] == "reparam", f"{name} must fold before anything else"


def test_baseline_loads_by_path():
    by_path = resolve_recipe(recipe=str(SHIPPED_DIR / "baseline.yaml"))
    assert by_path == load_recipe(path=SHIPPED_DIR / "baseline.yaml")
    assert by_path.verify.n_images == 32
    assert by_path.bench.min_runs == 30


def test_recipe_file_loads_by_path(fast_recipe_file):
    recipe = resolve_recipe(recipe=str(fast_recipe_file))
    assert recipe.name == "test"
    assert recipe.bench.min_runs == 5


def test_unknown_key_names_line_and_close_key(tmp_path):
    err = _error(
        tmp_path,
        """
        # a comment first
        version: 1
        verify:
          max_abs_diff: 1.0e-3
          n_imags: 8
    """,
    )
    assert "recipe.yaml:5:" in err.message
    assert "verify.n_imags" in err.message
    assert err.hint == "did you mean 'n_images'?"


def test_unknown_top_level_key_suggests_field(tmp_path):
    err = _error(tmp_path, "version: 1\npases: []\n")
    assert "recipe.yaml:2:" in err.message
    assert err.hint == "did you mean 'passes'?"


def test_unknown_key_in_list_item_names_its_line(tmp_path):
    err = _error(
        tmp_path,
        """
        version: 1
        targets:
          - format: onnx
            precison: fp32
    """,
    )
    assert "recipe.yaml:4:" in err.message
    assert err.hint == "did you mean 'precision'?"


def test_unknown_target_names_line_and_suggests_onnx(tmp_path):
    err = _error(
        tmp_path,
        """
        version: 1
        name: t
        targets:
          - format: onnx
          - format: onx
    """,
    )
    assert "recipe.yaml:5:" in err.message
    assert "unknown target 'onx'" in str(err)
    assert "did you mean 'onnx'" in str(err)


def test_unknown_target_option_names_line_and_close_option(tmp_path):
    err = _error(tmp_path, "version: 1\ntargets:\n  - format: onnx\n    options: {opst: 17}\n")
    assert "recipe.yaml:3:" in err.message
    assert "did you mean 'opset'" in err.message


def test_unsupported_precision_is_recipe_error(tmp_path):
    err = _error(tmp_path, "version: 1\ntargets:\n  - format: onnx\n    precision: int4\n")
    assert "supports precisions ['fp32', 'fp16', 'int8', 'int8-dynamic', 'auto']" in err.message


def test_unknown_pass_is_recipe_error(tmp_path):
    err = _error(tmp_path, "version: 1\npasses:\n  - name: no-such-pass\n")
    assert "recipe.yaml:3:" in err.message
    assert "unknown pass 'no-such-pass'" in err.message


def test_malformed_yaml_names_the_line(tmp_path):
    err = _error(tmp_path, "version: 1\ntargets: [onnx\nverify: {}\n")
    assert "not valid YAML" in err.message
    assert "line 3" in err.message


def test_non_mapping_top_level_is_recipe_error(tmp_path):
    err = _error(tmp_path, "- onnx\n- fp32\n")
    assert "must be a mapping" in err.message
    with pytest.raises(RecipeError, match="must be a mapping"):
        parse_recipe("onnx")


@pytest.mark.parametrize("text", ["[]\n", "false\n", "0\n"])
def test_empty_non_mapping_top_level_is_recipe_error(tmp_path, text):
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(path=_write(tmp_path, text))


def test_wrong_version_is_recipe_error(tmp_path):
    err = _error(tmp_path, "name: future\nversion: 2\n")
    assert "recipe.yaml:2: version" in err.message


def test_missing_recipe_file_is_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(path=tmp_path / "absent.yaml")


def test_unknown_shipped_name_suggests_close_name():
    with pytest.raises(RecipeError) as info:
        resolve_recipe(recipe="baselin")
    assert info.value.hint == "did you mean 'baseline'?"


def test_with_targets_replaces_targets_keeping_matching_options(fake_format):
    recipe = parse_recipe({"targets": [
        {"format": "onnx", "options": {"opset": 17}},
        {"format": fake_format, "precision": "fp16", "options": {"quality": 3}},
    ]})  # fmt: skip
    only_fake = recipe.with_targets([fake_format])
    assert [(t.format, t.precision) for t in only_fake.targets] == [("fake", "fp16")]
    assert only_fake.targets[0].options == {"quality": 3}
    assert only_fake.with_targets(["onnx"]).targets[0].options == {}
    assert recipe.with_targets(["onnx"]).targets[0].options == {"opset": 17}


def test_resolve_recipe_target_override(fake_format):
    recipe = resolve_recipe(recipe="baseline", targets=[fake_format, "onnx"])
    assert [t.format for t in recipe.targets] == ["fake", "onnx"]


def test_unknown_target_override_is_input_error():
    with pytest.raises(InputError, match="did you mean 'onnx'"):
        resolve_recipe(recipe="baseline", targets=["onx"])


def test_threads_override():
    assert resolve_recipe(recipe="baseline").bench.threads is None
    recipe = resolve_recipe(recipe="baseline", threads=3)
    assert recipe.bench.threads == 3
    assert recipe.bench.min_runs == 30


@pytest.mark.parametrize("threads", [0, -2])
def test_invalid_threads_override_is_recipe_error(threads):
    with pytest.raises(RecipeError):
        resolve_recipe(recipe="baseline", threads=threads)


def test_registered_pass_accepts_valid_options(scale_pass):
    recipe = parse_recipe({"passes": [{"name": "test-scale", "options": {"factor": 0.5, "blocks": 3}}]})
    options = recipe.passes[0].build_options()
    assert isinstance(options, _ScaleOptions)
    assert (options.factor, options.blocks) == (0.5, 3)


@pytest.mark.parametrize(
    ("option", "expected"),
    [("blocks: many", "valid integer"), ("factr: 0.5", "did you mean 'factor'")],
    ids=["wrong-type", "unknown-option"],
)
def test_registered_pass_rejects_bad_options(tmp_path, scale_pass, option, expected):
    err = _error(
        tmp_path,
        f"""
        version: 1
        passes:
          - name: test-scale
            options:
              {option}
    """,
    )
    assert "recipe.yaml:3: passes.0" in err.message
    assert option.split(":")[0] in err.message
    assert expected in err.message


def test_pass_is_unregistered_after_fixture():
    assert "test-scale" not in PASSES


def test_recipe_round_trips_through_yaml(tmp_path, scale_pass):
    recipe = parse_recipe({
        "name": "round", "description": "trip",
        "passes": [{"name": "test-scale", "options": {"factor": 0.25}}],
        "verify": {"n_images": 4}, "bench": {"threads": 2, "min_runs": 7},
    })  # fmt: skip
    text = recipe.to_yaml()
    assert parse_recipe(yaml.safe_load(text)) == recipe
    path = tmp_path / "round.yaml"
    path.write_text(text)
    assert load_recipe(path=path) == recipe
    assert isinstance(recipe, Recipe)
