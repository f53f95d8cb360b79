"""A pruned model outside vitopt's run: ``<out>/pytorch/`` holds ``model.safetensors`` and
``vitopt-model.json`` (where the architecture came from and the widths to slice it to), so
``vitopt eval|compress|train <out>/pytorch`` loads it back like any other model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from vitopt.errors import CheckpointError, UnsupportedOptionError
from vitopt.publish import replace_path

SAVED_FORMAT = "vitopt.pruned-model/1"
META_FILE, WEIGHTS_FILE, FOLDER = "vitopt-model.json", "model.safetensors", "pytorch"


def is_saved_model(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def save_if_restructured(module: nn.Module, *, model, staging: Path, out_dir: Path) -> str | None:
    """Save ``module`` when a pass changed its widths or zeroed weights (unstructured pruning); returns the
    folder, or None."""
    from vitopt.pruning.families import family_for

    try:
        family = family_for(module)
    except UnsupportedOptionError:  # not a prunable family: nothing was pruned
        return None
    widths, before = family.read_widths(module), family.read_widths(model.module)
    if widths == before and _zeros(module) <= _zeros(model.module):
        return None
    folder = staging / FOLDER
    save_model(module, widths=widths.to_dict(), source=model.source, model_kwargs=model.model_kwargs,
               spec=model.spec, folder=folder)  # fmt: skip
    replace_path(folder, out_dir / FOLDER)
    return str(out_dir / FOLDER)


def _zeros(module: nn.Module) -> int:
    return sum(int((p == 0).sum()) for p in module.parameters() if p.ndim >= 2)


def save_model(module: nn.Module, *, widths: dict, source: str, model_kwargs: dict, spec, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(folder / WEIGHTS_FILE))
    meta = {"format": SAVED_FORMAT, "source": source, "model_kwargs": model_kwargs,
            "widths": widths, "spec": json.loads(spec.to_json())}  # fmt: skip
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{str(folder)!r} is not a readable vitopt model folder: {err}") from err
    if meta.get("format") != SAVED_FORMAT:
        raise CheckpointError(f"{str(folder)!r}: unknown model folder format {meta.get('format')!r}")
    return meta


def load_saved(folder: Path):
    """(module, spec) of a saved pruned model: the source architecture, sliced, then its weights."""
    from safetensors.torch import load_file

    from vitopt.models import load_model
    from vitopt.pruning.families import family_for
    from vitopt.pruning.widths import Widths
    from vitopt.spec import ModelSpec

    meta = read_meta(folder)
    skeleton = load_model(name=meta["source"], model_kwargs=meta["model_kwargs"]).module
    family = family_for(skeleton)
    module = family.slice_model(skeleton, family.keep_first(Widths.from_dict(meta["widths"])))
    try:
        module.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"{str(folder / WEIGHTS_FILE)!r} does not fit the widths in {META_FILE}: {err}") from err
    return module.eval(), ModelSpec.from_json(json.dumps(meta["spec"]))


def discard_work(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
