"""Option types shared by the commands, so each flag is spelled and documented once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

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
