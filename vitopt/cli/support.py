"""Console, progress, error mapping and flag parsing shared by the CLI commands."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from vitopt.errors import InputError, UnsupportedOptionError, VitoptError

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


def setup_logging(*, debug: bool) -> None:
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logger = logging.getLogger("vitopt")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False


def handle_errors(command: Callable) -> Callable:
    """One clear line and an exit code for vitopt's errors; a traceback only with --debug."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.pop("debug", False))
        setup_logging(debug=debug)
        try:
            return command(*args, **kwargs)
        except VitoptError as err:
            if debug:
                raise
            hint = f"\n  hint: {escape(err.hint)}" if err.hint else ""
            console.print(f"[bold red]{err.label}:[/] {escape(err.message)}{hint}")
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]: no artifact was half-written")
            raise typer.Exit(130) from None

    return wrapper


@contextmanager
def step(description: str) -> Iterator[None]:
    """A spinner while a step runs, then a line with how long it took."""
    start = time.perf_counter()
    with console.status(f"{description}..."):
        yield
    console.print(f"[green]done[/] {description} [dim]({time.perf_counter() - start:.1f} s)[/]")


def parse_floats(text: str | None, *, flag: str, count: int | None = None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got {text!r}") from None
    if count is not None and len(values) != count:
        raise InputError(f"{flag} takes {count} values, got {len(values)}", hint=f"e.g. {flag} 3,224,224")
    return values


def spec_overrides(*, input_size: str | None, mean: str | None, std: str | None,
                   labels: Path | None) -> dict[str, Any]:  # fmt: skip
    size = parse_floats(input_size, flag="--input-size", count=3)
    overrides = {
        "input_size": tuple(int(v) for v in size) if size else None,
        "mean": parse_floats(mean, flag="--mean"),
        "std": parse_floats(std, flag="--std"),
        "labels": _read_labels(labels) if labels else None,
    }
    return overrides


def _read_labels(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise InputError(f"labels file {str(path)!r} does not exist", hint="one class name per line")
    labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not labels:
        raise UnsupportedOptionError(f"labels file {str(path)!r} is empty")
    return labels


def parse_assignments(items: list[str] | None, *, flag: str) -> dict[str, Any]:
    """``key=value`` pairs; values are read as YAML scalars (ints, floats, bools, lists)."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{flag} takes key=value, got {item!r}", hint=f"e.g. {flag} embed_dim=96")
        result[key.strip()] = yaml.safe_load(value)
    return result


def load_for_cli(name: str, *, checkpoint=None, trust=False, model_args=None, input_size=None, mean=None,
                 std=None, labels=None):  # fmt: skip
    """load_model with the CLI's spellings of its options, behind a progress step."""
    from vitopt.models import load_model

    overrides = spec_overrides(input_size=input_size, mean=mean, std=std, labels=labels)
    kwargs = parse_assignments(model_args, flag="--model-arg")
    with step(f"loading model {name}"):
        return load_model(name=name, checkpoint=checkpoint, trust_checkpoint=trust, spec_overrides=overrides,
                          model_kwargs=kwargs)  # fmt: skip
