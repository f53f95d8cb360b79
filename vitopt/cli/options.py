"""Option types shared by the commands, so each flag is spelled and documented once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

MODEL_HELP = "timm name, vitopt/ name, .pt2, .pt or file.py:factory."
ModelName = Annotated[str, typer.Argument(help=MODEL_HELP)]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
Checkpoint = Annotated[Optional[Path], typer.Option(help="Weights: .safetensors or a state dict.")]
Trust = Annotated[bool, typer.Option("--trust-checkpoint", help="Allow full pickles (runs code from the file).")]
InputSize = Annotated[Optional[str], typer.Option(help="C,H,W of one input image, e.g. 3,224,224.")]
Mean = Annotated[Optional[str], typer.Option(help="Per-channel mean, e.g. 0.485,0.456,0.406.")]
Std = Annotated[Optional[str], typer.Option(help="Per-channel std.")]
Labels = Annotated[Optional[Path], typer.Option(help="Text file with one class name per line.")]
ModelArg = Annotated[Optional[list[str]], typer.Option("--model-arg", help="key=value for the model constructor.")]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Also write the result as JSON.")]
Threads = Annotated[Optional[int], typer.Option(min=1, help="Runtime threads (default: physical cores).")]


@dataclass(frozen=True)
class ModelOptions:
    """The model-loading flags every command shares, gathered by :func:`model_options`."""

    checkpoint: Path | None = None
    trust_checkpoint: bool = False
    model_arg: list[str] | None = None
    input_size: str | None = None
    mean: str | None = None
    std: str | None = None
    labels: Path | None = None

    def load(self, name: str):
        from vitopt.cli.support import load_for_cli

        return load_for_cli(name, checkpoint=self.checkpoint, trust=self.trust_checkpoint, model_args=self.model_arg,
                            input_size=self.input_size, mean=self.mean, std=self.std, labels=self.labels)  # fmt: skip


_WEIGHT_FLAGS = {"checkpoint": (Checkpoint, None), "trust_checkpoint": (Trust, False), "model_arg": (ModelArg, None)}
_SPEC_FLAGS = {"input_size": (InputSize, None), "mean": (Mean, None), "std": (Std, None), "labels": (Labels, None)}


def model_options(*, spec: bool = True) -> Callable[[Callable], Callable]:
    """Give a command the model-loading flags (and, with ``spec``, the input-contract flags) as one
    ``model_options: ModelOptions`` argument, so the flags are declared here only.

    Typer builds a command from its signature, so the wrapper's signature is the command's own
    with the ``model_options`` parameter replaced by the individual flags.
    """
    flags = _WEIGHT_FLAGS | (_SPEC_FLAGS if spec else {})

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = ModelOptions(**{name: kwargs.pop(name) for name in flags})
            return command(*args, model_options=options, **kwargs)

        own = inspect.signature(command, eval_str=True).parameters.values()  # annotations as objects, not strings
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.name != "model_options"]
        extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
                 for n, (a, d) in flags.items()]  # fmt: skip
        wrapper.__signature__ = inspect.Signature(keyword + extra)
        wrapper.__annotations__ = {p.name: p.annotation for p in keyword + extra}
        return wrapper

    return decorate
