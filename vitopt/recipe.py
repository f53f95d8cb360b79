"""Recipes: which model passes to run, which targets to emit, tolerances and benchmark settings.

A recipe is YAML validated into these versioned pydantic models on load; an unknown pass,
target or key is an error naming its line, with a "did you mean" where one is close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vitopt.errors import InputError, RecipeError, did_you_mean
from vitopt.formats import FORMATS
from vitopt.passes import PassOptions, pass_registry

RECIPE_VERSION = 1
FLOAT_PRECISIONS = ("fp32", "fp16")
OP_GROUPS = ("layer_norm", "softmax", "gelu", "residual_add")  # what ViT quantisation keeps in float by default


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PassStep(_Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_pass_with_valid_options(self) -> PassStep:
        _validate_options(_lookup(pass_registry(), self.name).Options, self.options)
        return self

    def build_options(self) -> PassOptions:
        return pass_registry().get(self.name).Options.model_validate(self.options)


class QuantizeSettings(_Strict):
    """How a target's precision is chosen when ``precision: auto``, and how quantisers treat a ViT."""

    candidates: list[str] | None = None  # default: every precision the format offers
    keep_float: list[Literal["layer_norm", "softmax", "gelu", "residual_add"]] = Field(
        default_factory=lambda: list(OP_GROUPS))  # fmt: skip
    keep_float_modules: list[str] = Field(default_factory=list)  # module-name globs, e.g. "head", "patch_embed*"
    calibration_images: int = Field(128, ge=1)
    max_accuracy_drop: float = Field(0.01, ge=0, le=1)  # with labelled --eval-data: top-1 points, as a fraction
    min_top1_agreement: float = Field(0.97, ge=0, le=1)  # without labels: agreement with the float model
    min_gain: float = Field(0.05, ge=0)  # a lower precision replaces fp32 only when this much faster
    # With labelled --data, OpenVINO int8 runs NNCF's accuracy-controlled quantisation: layers are
    # reverted to float until top-1 on `validation_images` of --data is within max_accuracy_drop.
    accuracy_control: bool = True
    validation_images: int = Field(300, ge=1)


class Target(_Strict):
    format: str
    precision: str = "fp32"  # one of the format's precisions, or "auto"; omitted: the format's default
    options: dict[str, Any] = Field(default_factory=dict)
    quantize: QuantizeSettings = Field(default_factory=QuantizeSettings)

    @model_validator(mode="before")
    @classmethod
    def _format_default_precision(cls, data: Any) -> Any:
        if isinstance(data, dict) and "precision" not in data and data.get("format") in FORMATS:
            return {**data, "precision": FORMATS.get(data["format"]).default_precision}
        return data

    @model_validator(mode="after")
    def _known_format_and_precision(self) -> Target:
        fmt = _lookup(FORMATS, self.format)
        if self.precision not in (*fmt.precisions, "auto"):
            raise ValueError(f"{self.format} supports precisions {[*fmt.precisions, 'auto']}")
        unknown = [c for c in self.quantize.candidates or [] if c not in fmt.precisions]
        if unknown:
            raise ValueError(f"quantize.candidates: {unknown} are not {self.format} precisions {list(fmt.precisions)}")
        _validate_options(fmt.exporter_class().Options, self.options)
        return self

    def candidates(self) -> list[Target]:
        """The concrete targets this one stands for: itself, or with ``auto`` one per candidate precision."""
        if self.precision != "auto":
            return [self]
        names = self.quantize.candidates or list(FORMATS.get(self.format).precisions)
        return [self.model_copy(update={"precision": name}) for name in dict.fromkeys(["fp32", *names])
                if name in FORMATS.get(self.format).precisions]  # fmt: skip

    @property
    def quantized(self) -> bool:
        return self.precision not in (*FLOAT_PRECISIONS, "auto")


class VerifySettings(_Strict):
    n_images: int = Field(32, ge=1)
    max_abs_diff: float = Field(1e-3, gt=0)  # fp32 tolerance; lower precisions set their own
    min_top1_agreement: float = Field(0.99, ge=0, le=1)


class BenchRecipe(_Strict):
    enabled: bool = True
    warmup: int = Field(5, ge=0)
    min_runs: int = Field(30, ge=1)
    min_time_s: float = Field(2.0, ge=0)
    threads: int | None = Field(None, ge=1)
    batch_size: int = Field(1, ge=1)


class Recipe(_Strict):
    version: Literal[1] = RECIPE_VERSION
    name: str = "custom"
    description: str = ""
    passes: list[PassStep] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=lambda: [Target(format="onnx")])
    verify: VerifySettings = Field(default_factory=VerifySettings)
    bench: BenchRecipe = Field(default_factory=BenchRecipe)
    # what `vitopt gate` holds the report to when no --budget file is given (vitopt/gate/budgets.py)
    budgets: dict[str, Any] = Field(default_factory=dict)

    @field_validator("budgets")
    @classmethod
    def _valid_budgets(cls, budgets: dict[str, Any]) -> dict[str, Any]:
        if budgets:
            from vitopt.gate.budgets import Budgets

            Budgets.model_validate(budgets)
        return budgets

    @field_validator("targets")
    @classmethod
    def _at_least_one_target(cls, targets: list[Target]) -> list[Target]:
        if not targets:
            raise ValueError("a recipe needs at least one target")
        return targets

    def with_targets(self, formats: list[str]) -> Recipe:
        """The CLI's --target flags replace the recipe's targets (keeping matching options)."""
        known = {t.format: t.model_dump() for t in self.targets}
        targets = [known.get(f) or {"format": f} for f in formats]
        return parse_recipe({**self.model_dump(), "targets": targets}, source="--target")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _validate_options(options_model: type[BaseModel], options: dict[str, Any]) -> None:
    """Validate a pass's or exporter's options, re-raised so the error names the option."""
    try:
        options_model.model_validate(options)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        hint = did_you_mean(key, options_model.model_fields) if first["type"] == "extra_forbidden" else None
        known = ", ".join(options_model.model_fields) or "none"
        raise ValueError(f"option {key!r}: {first['msg']} ({hint or 'options: ' + known})") from None


def _lookup(registry, name: str):
    """Registry look-up as a ValueError, so pydantic reports it at the offending line."""
    try:
        return registry.get(name)
    except InputError as err:
        raise ValueError(str(err)) from err


def load_recipe(*, path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {str(path)!r} does not exist", hint=_shipped_hint())
    text = _read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {yaml_problem(err)}") from err
    if data is None:  # empty, only comments, or `null`: most likely the wrong file, so not silently the defaults
        raise RecipeError(f"recipe {str(path)!r} is empty (no keys: blank, only comments or null)",
                          hint="write at least `targets: [{format: onnx}]`, or start from a copy of "
                               "recipes/baseline.yaml (shipped as --recipe baseline)")
    return parse_recipe(data, source=str(path), text=text)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(f"recipe {str(path)!r} is not UTF-8 text: byte {err.object[err.start]:#04x} at offset "
                          f"{err.start}", hint="save the recipe as UTF-8 (it is YAML)") from err
    except OSError as err:
        raise RecipeError(f"cannot read recipe {str(path)!r}: {err.strerror or err}") from err


def parse_recipe(data: Any, *, source: str = "<recipe>", text: str | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {source!r} must be a mapping of keys, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise _recipe_error(err, source=source, text=text) from err


def _recipe_error(err: ValidationError, *, source: str, text: str | None) -> RecipeError:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    line = yaml_line_of(text, loc)
    at = f"{source}:{line}" if line else source
    hint = None
    if first["type"] == "extra_forbidden" and loc:
        hint = did_you_mean(str(loc[-1]), _fields_at(loc[:-1]))
    return RecipeError(f"recipe {at}: {where}: {first['msg']}", hint=hint)


def _fields_at(loc: tuple) -> list[str]:
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        model = getattr(annotation, "__args__", (annotation,))[0]
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            return []
    return list(model.model_fields)


def yaml_line_of(text: str | None, loc: tuple) -> int | None:
    """1-based line of the YAML node at ``loc`` (or its nearest existing parent)."""
    if not text:
        return None
    node = yaml.compose(text)
    line = node.start_mark.line if node is not None else 0
    for part in loc:
        key, node = _child(node, part)
        if node is None:
            break
        line = (key or node).start_mark.line
    return line + 1


def _child(node, part):
    """(key node or None, value node) of ``part`` under ``node``; (None, None) when absent."""
    if isinstance(node, yaml.MappingNode):
        return next(((k, v) for k, v in node.value if k.value == part), (None, None))
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return None, node.value[part]
    return None, None


def yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    opened = getattr(err, "context_mark", None)
    where = f" (the construct opened on line {opened.line + 1})" if opened and mark and opened.line != mark.line else ""
    return f"line {mark.line + 1}: {problem}{where}" if mark else problem


def _shipped_hint() -> str:
    return "recipes shipped with vitopt are in the repository's recipes/ folder"
