"""Model passes: target-neutral ``torch.nn.Module -> torch.nn.Module`` steps of a recipe.

A pass declares its options as a pydantic model (validated when the recipe loads) and
returns what it did; the pipeline times it and records params/FLOPs around it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from vitopt.errors import RecipeError
from vitopt.registry import Registry

# Modules that register built-in passes; imported on first use so `import vitopt` stays light.
BUILTIN_PASS_MODULES: tuple[str, ...] = ("vitopt.reparam", "vitopt.pruning.prune_pass", "vitopt.pruning.distill_pass",
                                         "vitopt.pruning.dimap_pass")


class PassOptions(BaseModel):
    """Base of every pass's options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PassContext:
    """What a pass may use besides the module: the spec, calibration images, settings."""

    spec: Any
    calibration: Any = None  # torch.Tensor [N, C, H, W] of real preprocessed images
    teacher: Any = None  # the unmodified module, for passes that distil from it
    data: Path | None = None  # images passes train on (--data; labels optional)
    work_dir: Path | None = None  # where a long pass checkpoints; kept until the run succeeds
    resume: bool = False  # continue from work_dir's checkpoints (--resume)
    targets: tuple[Any, ...] = ()  # the recipe's targets: a latency budget is measured on the first
    threads: int | None = None
    progress: Any = None  # progress(description, total) -> context manager yielding tick(), or None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassResult:
    module: Any
    details: dict[str, Any] = field(default_factory=dict)


class ModelPass:
    """Subclass, set ``name`` and ``Options``, implement ``run``; register with ``@register_pass``."""

    name: ClassVar[str]
    Options: ClassVar[type[PassOptions]] = PassOptions
    trains: ClassVar[bool] = False  # needs --data (checked before any pass runs)

    def __init__(self, options: PassOptions) -> None:
        self.options = options

    def run(self, module, *, context: PassContext) -> PassResult:
        raise NotImplementedError


PASSES: Registry[type[ModelPass]] = Registry("pass", error=RecipeError)
_loaded = False


def register_pass(cls: type[ModelPass]) -> type[ModelPass]:
    PASSES.add(cls.name, cls)
    return cls


def pass_registry() -> Registry[type[ModelPass]]:
    global _loaded
    if not _loaded:
        for module in BUILTIN_PASS_MODULES:
            importlib.import_module(module)
        _loaded = True
    return PASSES
