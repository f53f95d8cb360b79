"""``vitopt inspect``: parameters, FLOPs, input contract and block structure of a model."""

from __future__ import annotations

from vitopt.cli import app
from vitopt.cli.options import Debug, JsonOut, ModelName, ModelOptions, model_options
from vitopt.cli.support import handle_errors, out, write_json_file


@app.command()
@handle_errors
@model_options()
def inspect(model: ModelName, json_out: JsonOut = None, debug: Debug = False,
            model_options: ModelOptions = ModelOptions()) -> None:  # fmt: skip
    """Parameters, FLOPs, input contract and block structure of a model."""
    from vitopt.inspect_model import describe_model
    from vitopt.inspect_view import render_description

    info = describe_model(model_options.load(model))
    render_description(info, console=out)
    if json_out:
        write_json_file(json_out, info)
