"""Budgets: per target (``onnx``) or per target and precision (``onnx/int8``), from a YAML file or the
recipe's ``budgets`` section. A malformed budget is one line naming the file and line (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator

from vitopt.errors import InputError, did_you_mean


class BudgetError(InputError):
    """A budget file that is missing, malformed or names an unknown target or metric."""


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: float | None = Field(None, gt=0)  # absolute latency ceilings
    p90_ms: float | None = Field(None, gt=0)
    min_speedup: float | None = Field(None, gt=0)  # artifact vs the unmodified model, same run
    max_regression: float | None = Field(None, ge=0)  # p50 vs --baseline's, as a fraction
    max_size_mb: float | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)  # top-1 vs the unmodified model, a fraction
    min_top1_agreement: float | None = Field(None, ge=0, le=1)  # parity with the model it came from


class Budgets(RootModel[dict[str, Budget]]):
    @field_validator("root")
    @classmethod
    def _known_targets(cls, budgets: dict[str, Budget]) -> dict[str, Budget]:
        from vitopt.formats import FORMATS

        for key in budgets:
            fmt, _, precision = key.partition("/")
            if fmt not in FORMATS:
                known = did_you_mean(fmt, FORMATS.names()) or "targets: " + ", ".join(FORMATS.names())
                raise ValueError(f"unknown target {fmt!r} ({known})")
            if precision and precision not in FORMATS.get(fmt).precisions:
                known = ", ".join(FORMATS.get(fmt).precisions)
                raise ValueError(f"{fmt} has no precision {precision!r} (precisions: {known})")
        return budgets

    def for_row(self, target: str, precision: str) -> Budget | None:
        """The most specific budget for an artifact: ``target/precision`` before ``target``."""
        return self.root.get(f"{target}/{precision}") or self.root.get(target)


def load_budgets(path: Path) -> Budgets:
    if not path.is_file():
        raise BudgetError(f"budget file {str(path)!r} does not exist")
    text = path.read_text(errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        from vitopt.recipe import yaml_problem

        raise BudgetError(f"budget file {str(path)!r} is not valid YAML: {yaml_problem(err)}") from err
    return parse_budgets(data, source=str(path), text=text)


def parse_budgets(data: Any, *, source: str, text: str | None = None) -> Budgets:
    if not isinstance(data, dict) or not data:
        raise BudgetError(f"budget file {source!r} must map targets to budgets, e.g. 'onnx: {{p50_ms: 4.0}}'")
    try:
        return Budgets.model_validate(data)
    except ValidationError as err:
        raise _budget_error(err, source=source, text=text) from err


def _budget_error(err: ValidationError, *, source: str, text: str | None) -> BudgetError:
    from vitopt.recipe import yaml_line_of

    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if p != "root")
    line = yaml_line_of(text, loc)
    hint = None
    if first["type"] == "extra_forbidden" and loc:
        hint = did_you_mean(str(loc[-1]), Budget.model_fields) or f"metrics: {', '.join(Budget.model_fields)}"
    where = ".".join(str(p) for p in loc) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    return BudgetError(f"budget {source}{f':{line}' if line else ''}: {where}: {msg}", hint=hint)
