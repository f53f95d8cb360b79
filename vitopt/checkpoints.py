"""Reading weights safely: safetensors or tensor-only pickles, full pickles only when trusted."""

from __future__ import annotations

import mmap
import pickle
import pickletools
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitopt.errors import CheckpointError, one_line

_WRAPPER_KEYS = ("state_dict", "model", "model_ema", "module")
_TRUST_HINT = "use --trust-checkpoint only if you trust its source: loading it runs code from the file"
_RESAVE_HINT = "re-save it with torch.save(model.state_dict(), path) or as .safetensors"


def read_checkpoint(path: str | Path, *, trust: bool = False) -> Any:
    """Load a checkpoint file; pickles are restricted to tensors unless ``trust`` is set."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist", hint="check the path")
    if path.suffix == ".safetensors" or _is_safetensors(path):
        return _read_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols its safe loader may not read
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as err:  # the unpickler raises UnpicklingError, IndexError, KeyError, zip errors...
        raise _load_error(path, err, trust=trust) from err


def _load_error(path: Path, err: Exception, *, trust: bool) -> CheckpointError:
    """Say which it is: a file of code-running pickles, a broken PyTorch file, or no checkpoint at all."""
    kind = _pickle_kind(path)
    if kind is None:
        return CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a checkpoint at all "
                               "(neither a PyTorch file nor safetensors)", hint=_RESAVE_HINT)  # fmt: skip
    # a well-formed pickle that torch's weights_only loader refuses holds more than tensors
    if not trust and isinstance(err, pickle.UnpicklingError) and (kind == "pickle" or "Unsupported global" in str(err)):
        return CheckpointError(f"checkpoint {str(path)!r} holds pickled objects beyond tensors", hint=_TRUST_HINT)
    if isinstance(err, (AttributeError, ImportError)):  # a trusted pickle naming classes this process lacks
        return CheckpointError(f"checkpoint {str(path)!r} pickles objects whose code is not importable here: "
                               f"{one_line(err)}", hint="load it where its classes exist and save model.state_dict()")
    return CheckpointError(f"checkpoint {str(path)!r} is a corrupt PyTorch file: {_torch_reason(err)}",
                           hint=_RESAVE_HINT)  # fmt: skip


def _pickle_kind(path: Path) -> str | None:
    """"zip" for torch.save's zip archive, "pickle" for a well-formed pickle stream, None for neither.

    The stream is only parsed (pickletools), never run; a memory map bounds every read by the file size.
    """
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            return "zip"
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return "pickle" if any(op.name == "STOP" for op, _, _ in pickletools.genops(data)) else None
        except Exception:  # garbage ends the parse with ValueError, an empty file fails the map...
            return None


def _is_safetensors(path: Path) -> bool:
    """A safetensors file under another name: an 8-byte header length, then a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") < path.stat().st_size


def _torch_reason(err: BaseException, *, limit: int = 200) -> str:
    """torch's cause in whole sentences, without its advice to load with weights_only=False (not ours to give)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = " ".join(text.split())
    end = text.rfind(". ", 0, limit) if len(text) > limit else -1
    return text[: end + 1] if end > 0 else one_line(Exception(text), limit=limit)


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
            hint="is it for this architecture? pass the matching model name, or --model-arg num_classes=N",
        ) from err


def _first_line(err: BaseException, *, limit: int = 160) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
