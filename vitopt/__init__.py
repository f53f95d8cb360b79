"""vitopt: compress, export, verify and measure vision transformers.

``import vitopt`` stays light: heavy backends (onnxruntime, openvino, coremltools, tensorrt)
load only inside the functions that need them, and the public API below resolves lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from vitopt.errors import InputError, RunError, VitoptError

__version__ = "0.1.0"

_LAZY = {  # public name -> the vitopt module that defines it
    "load_model": "models",
    "LoadedModel": "models",
    "ModelSpec": "spec",
    "Recipe": "recipe",
    "load_recipe": "recipe",
    "compress": "pipeline",
    "measure": "bench",
    "measure_interleaved": "bench",
}

__all__ = ["InputError", "RunError", "VitoptError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vitopt' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vitopt.{module}"), name)
