"""What an ONNX artifact's row says beyond parity: whether its input shape is static, and for a static
model (the kind a phone runs) ONNX Runtime's mobile checker's verdict on it. Informational: nothing
here rejects an artifact; a dynamic-shape model is judged after ``vitopt bundle`` fixes its shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitopt.spec import ModelSpec


def validate_onnx(path: Path, *, spec: ModelSpec, precision: str) -> dict[str, Any]:
    import onnx

    from vitopt.backends.onnx.mobile_check import usability

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = [d for i in graph.input for d in i.type.tensor_type.shape.dim]
    static = all(d.HasField("dim_value") for d in dims)
    if not static:
        return {"checked": ["input shape (dynamic)"], "static_shapes": False}
    return {"checked": ["input shape (static)", "ONNX Runtime mobile checker"], "static_shapes": True,
            "mobile": usability(Path(path))}  # fmt: skip
