"""Resizes coremltools cannot convert (bicubic), written as what they are on a fixed-size input: a
linear map along each axis, so ``out = A_h @ x @ A_w^T`` with constant interpolation matrices.

The matrices are read from PyTorch's own kernel applied to identity images, so the rewrite reproduces its
exact weights, border clamping and ``align_corners`` handling (PyTorch's bicubic is separable: one cubic
kernel along H, one along W, indices clamped per axis); the result matches up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx

aten = torch.ops.aten
RESIZES = {aten.upsample_bicubic2d.vec, aten.upsample_bicubic2d.default}


def axis_matrix(size_in: int, size_out: int, *, align_corners: bool, scale: float | None) -> torch.Tensor:
    """[size_out, size_in]: row i holds the weights output i takes from each input position."""
    eye = torch.eye(size_in, dtype=torch.float64).view(size_in, 1, size_in, 1)
    factor = None if scale is None else (scale, 1.0)
    out = F.interpolate(eye, size=None if factor else (size_out, 1), scale_factor=factor, mode="bicubic",
                        align_corners=align_corners)  # fmt: skip
    return out.view(size_in, size_out).t().contiguous()


def resize_as_matmuls(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    """Replace one bicubic resize node of a fixed-size input by two matmuls with constant matrices."""
    value, out_value = node.args[0].meta.get("val"), node.meta.get("val")
    if not isinstance(value, torch.Tensor) or not isinstance(out_value, torch.Tensor) or value.dim() != 4:
        return False
    (h_in, w_in), (h_out, w_out) = value.shape[-2:], out_value.shape[-2:]
    align, scales = _align_and_scales(node)
    rows = axis_matrix(h_in, h_out, align_corners=align, scale=scales[0]).to(value.dtype)
    cols = axis_matrix(w_in, w_out, align_corners=align, scale=scales[1]).t().contiguous().to(value.dtype)
    graph = graph_module.graph
    with graph.inserting_before(node):
        left = graph.get_attr(_constant(graph_module, f"{node.name}_rows", rows))
        right = graph.get_attr(_constant(graph_module, f"{node.name}_cols", cols))
        tall = graph.call_function(aten.matmul.default, (left, node.args[0]))
        out = graph.call_function(aten.matmul.default, (tall, right))
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    return True


def _align_and_scales(node: fx.Node) -> tuple[bool, tuple[float | None, float | None]]:
    """(align_corners, (scale_h, scale_w)) from either overload's arguments."""
    args = list(node.args) + [None] * 4
    if node.target == aten.upsample_bicubic2d.vec:  # (input, output_size, align_corners, scale_factors)
        factors = args[3] or (None, None)
        return bool(args[2]), (factors[0], factors[1])
    return bool(args[2]), (args[3], args[4])  # (input, output_size, align_corners, scales_h, scales_w)


def _constant(graph_module: fx.GraphModule, name: str, value: torch.Tensor) -> str:
    graph_module.register_buffer(name, value)
    return name
