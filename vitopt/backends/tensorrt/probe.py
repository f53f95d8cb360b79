"""What TensorRT will reject or change, read from the one traced graph.

TensorRT builds for fixed shapes (or a min/opt/max profile per dynamic dimension), has no
float64, and its ONNX parser lacks a few operators; the aten ops that lower to those are
blockers (see ``support.UNSUPPORTED_OPS`` for the ONNX side, checked on export).
"""

from __future__ import annotations

from collections import defaultdict

import torch

from vitopt.convertibility import Finding, aten_nodes, core_aten, summarise
from vitopt.spec import ModelSpec

# aten op -> the ONNX operator it lowers to, which TensorRT's parser does not support
REJECTED = {
    "aten.unique_consecutive": "Unique", "aten.unique_dim": "Unique", "aten._unique2": "Unique",
    "aten.bernoulli": "Bernoulli", "aten.multinomial": "Multinomial", "aten.linalg_det": "Det",
    "aten.bitwise_left_shift": "BitShift", "aten.bitwise_right_shift": "BitShift", "aten._fft_r2c": "DFT",
    "aten._fft_c2c": "DFT", "aten._fft_c2r": "DFT", "aten.stft": "STFT",
}  # fmt: skip
SHAPES = "exported with a static batch (option batch) or a min/opt/max profile (option max_batch)"
FLOAT64 = "TensorRT casts float64 down to float32 (values beyond float32 range are clamped)"


def probe(program, *, spec: ModelSpec) -> list[Finding]:
    found = [Finding(target="tensorrt", op="dynamic batch", detail="TensorRT engines need shapes fixed at build time",
                     rewrite=SHAPES)]  # fmt: skip
    rejected, float64 = defaultdict(list), []
    for node, name in aten_nodes(core_aten(program)):
        if name in REJECTED:
            rejected[name].append(node)
        if _dtype(node) == torch.float64:
            float64.append(node)
    found += [Finding(target="tensorrt", op=name, detail=f"lowers to ONNX {REJECTED[name]}, which TensorRT's parser "
                      f"does not support: {summarise(nodes)}") for name, nodes in sorted(rejected.items())]  # fmt: skip
    if float64:
        found.append(Finding(target="tensorrt", op="float64 tensors", detail=summarise(float64), rewrite=FLOAT64))
    return found


def _dtype(node):
    value = node.meta.get("val")
    return getattr(value, "dtype", None)
