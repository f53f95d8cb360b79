"""What a pruning budget measures: latency on the target's runtime (NViT's lookup table), FLOPs or
parameters, each as a function of the widths so the planner can price every candidate group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from vitopt.errors import UnsupportedOptionError
from vitopt.flops import model_cost
from vitopt.pruning.widths import Widths


@dataclass(frozen=True)
class BudgetCost:
    kind: str  # latency, flops or params
    unit: str
    of: Callable[[Widths], float]
    original: float
    fraction: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> float:
        return self.original * self.fraction


def budget_cost(module: nn.Module, *, family, context, options) -> BudgetCost:
    kind, fraction = options.budget
    widths = family.read_widths(module)
    if kind == "latency":
        of, info = _latency(module, family=family, context=context, options=options)
        return BudgetCost(kind, "ms", of, of(widths), fraction, info)
    of = _counted(module, family=family, kind=kind, input_size=context.spec.input_size)
    return BudgetCost(kind, kind, of, of(widths), fraction)


def _latency(module, *, family, context, options):
    from vitopt.pruning.latency_measure import latency_table
    from vitopt.pruning.progress import bar

    if not context.targets:
        raise UnsupportedOptionError("a latency budget needs a target to measure on", hint="add a target")
    if not family.supports_latency_table:
        raise UnsupportedOptionError(f"latency tables are measured for plain ViT blocks, not {family.name} ones",
                                     hint="give this model a flops or params budget")  # fmt: skip
    from vitopt.train.distributed import broadcast_object, init_world

    target, world = context.targets[0], init_world()
    measured = None
    if world.is_main:  # one rank measures (the others would share its cores); every rank plans with its table
        measured = latency_table(module, family=family, spec=context.spec, target=target, threads=context.threads,
                                 multiples=options.multiples, points=options.latency_grid_points,
                                 progress=lambda d, n: bar(d, n))  # fmt: skip
    grid, cached = broadcast_object(measured, world)
    info = {"runtime_target": target.format, "threads": context.threads, "table_cached": cached,
            "table_levels": grid.levels, "stem_ms": round(grid.stem_ms, 4)}  # fmt: skip
    return grid.model_ms, info


def _counted(module, *, family, kind: str, input_size) -> Callable[[Widths], float]:
    """The analytic block costs plus a constant for the rest, which the real count of the model gives."""
    def blocks(widths: Widths) -> float:
        return family.blocks_cost(module, widths, kind)

    full = family.read_widths(module)
    rest = getattr(model_cost(module, input_size=input_size), kind) - blocks(full)
    return lambda widths: rest * widths.emb / full.emb + blocks(widths)  # patch embedding and head scale with EMB
