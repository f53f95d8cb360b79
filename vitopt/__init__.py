"""vitopt: compress, export, verify and measure vision transformers.

``import vitopt`` stays light: heavy backends (onnxruntime, openvino, coremltools, tensorrt)
load only inside the functions that need them, and the public API below resolves lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from vitopt.errors import InputError, RunError, VitoptError

__version__ = "0.1.0"

_LAZY = {
    "load_model": "vitopt.models",
    "LoadedModel": "vitopt.models",
    "ModelSpec": "vitopt.spec",
    "Recipe": "vitopt.recipe",
    "load_recipe": "vitopt.recipe",
    "compress": "vitopt.pipeline",
    "measure": "vitopt.bench",
    "measure_interleaved": "vitopt.bench",
}

__all__ = ["InputError", "RunError", "VitoptError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vitopt' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
