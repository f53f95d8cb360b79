"""Reading weights safely: safetensors or tensor-only pickles, full pickles only when trusted."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitopt.errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "model", "model_ema", "module")
_TRUST_HINT = "if you trust its source, pass --trust-checkpoint (it runs code from the file)"


def read_checkpoint(path: str | Path, *, trust: bool = False) -> Any:
    """Load a checkpoint file; pickles are restricted to tensors unless ``trust`` is set."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist", hint="check the path")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        # torch's wording when weights_only refuses a class; anything else is a broken file
        if not trust and "Unsupported global" in str(err):
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds pickled objects beyond tensors", hint=_TRUST_HINT
            ) from err
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: {_first_line(err)}") from err
    except Exception as err:  # the unpickler raises IndexError, KeyError, zip errors... on garbage
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a PyTorch file: {_first_line(err)}",
            hint="re-save it with torch.save(model.state_dict(), path) or as .safetensors",
        ) from err


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"safetensors file {str(path)!r} is corrupt: {_first_line(err)}") from err


def state_dict_of(obj: Any, *, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped from trainer dicts and DDP's ``module.`` prefix."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    for key in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, path: str | Path) -> None:
    """Load strictly, with a message naming the first mismatching keys and shapes."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit the model: {_first_line(err, limit=300)}",
            hint="is it for this architecture? pass the matching model name or --num-classes",
        ) from err


def _first_line(err: BaseException, *, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
