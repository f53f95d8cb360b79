"""Resizes coremltools cannot convert (bicubic, and antialiased bicubic or bilinear), written as what
they are on a fixed-size input: a linear map along each axis, so ``out = A_h @ x @ A_w^T`` with constant
interpolation matrices.

The matrices are read from PyTorch's own kernel applied to identity images, so the rewrite reproduces its
exact weights, border clamping, antialiasing and ``align_corners`` handling (PyTorch's kernels for these
modes are separable: one 1-D filter along H, one along W); the result matches up to float rounding.
"""

from __future__ import annotations

import torch
from torch import fx

aten = torch.ops.aten
# each overload -> the overload taking (input, output_size, align_corners, scales_h, scales_w)
RESIZES = {
    aten.upsample_bicubic2d.vec: aten.upsample_bicubic2d.default,
    aten.upsample_bicubic2d.default: aten.upsample_bicubic2d.default,
    aten._upsample_bicubic2d_aa.vec: aten._upsample_bicubic2d_aa.default,
    aten._upsample_bicubic2d_aa.default: aten._upsample_bicubic2d_aa.default,
    aten._upsample_bilinear2d_aa.vec: aten._upsample_bilinear2d_aa.default,
    aten._upsample_bilinear2d_aa.default: aten._upsample_bilinear2d_aa.default,
}
RESIZE_NAMES = tuple(sorted({f"aten.{op._opname}" for op in RESIZES}))


def axis_matrix(op, size_in: int, size_out: int, *, align_corners: bool, scale: float | None) -> torch.Tensor:
    """[size_out, size_in]: row i holds the weights output i takes from each input position, read off the
    resize ``op`` itself applied to the identity (a 1 x size_in image per input position). Probed along W
    for either axis: probed along H with a width-1 image, PyTorch's antialiased kernels return weights that
    differ from the ones they apply to wider images (measured: 2.6 off on a 7x9 image)."""
    eye = torch.eye(size_in, dtype=torch.float64).view(size_in, 1, 1, size_in)
    out = RESIZES[op](eye, [1, size_out], align_corners, None, scale)
    return out.view(size_in, size_out).t().contiguous()


def resize_as_matmuls(graph_module: fx.GraphModule, node: fx.Node) -> bool:
    """Replace one resize node of a fixed-size input by two matmuls with constant matrices."""
    value, out_value = node.args[0].meta.get("val"), node.meta.get("val")
    if not isinstance(value, torch.Tensor) or not isinstance(out_value, torch.Tensor) or value.dim() != 4:
        return False
    (h_in, w_in), (h_out, w_out) = value.shape[-2:], out_value.shape[-2:]
    align, scales = _align_and_scales(node)
    rows = axis_matrix(node.target, h_in, h_out, align_corners=align, scale=scales[0]).to(value.dtype)
    cols = axis_matrix(node.target, w_in, w_out, align_corners=align, scale=scales[1]).t().contiguous().to(value.dtype)
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
    if node.target._overloadname == "vec":
        # (input, output_size, align_corners, scale_factors)
        factors = args[3] or (None, None)
        return bool(args[2]), (factors[0], factors[1])
    return bool(args[2]), (args[3], args[4])  # (input, output_size, align_corners, scales_h, scales_w)


def _constant(graph_module: fx.GraphModule, name: str, value: torch.Tensor) -> str:
    graph_module.register_buffer(name, value)
    return name
