"""``F.fold`` (``aten.col2im``) with overlapping windows, which coremltools cannot convert (it takes only
stride >= kernel size; VOLO's outlook attention folds 3x3 windows at stride 1 or 2), written as what it is:
each kernel offset's columns, spread out by the stride (zeros between), padded to their place in the
output and added up, then the padding cropped. The additions run in kernel order from the first offset,
as PyTorch's col2im loop adds them, so the result matches it.
"""

from __future__ import annotations

import torch
from torch import fx

from vitopt.backends.coreml.rank_lowering import call, shape_of

aten = torch.ops.aten


def fold_as_pads(graph: fx.Graph, node: fx.Node) -> bool:
    """Rewrite one overlapping, batched col2im node; False (left as is) otherwise."""
    source, output_size, kernel, dilation, padding, stride = node.args
    shape = shape_of(source)
    if shape is None or len(shape) != 3 or all(s >= k for s, k in zip(stride, kernel, strict=True)):
        return False
    (batch, columns, _), (height, width) = shape, output_size
    channels = columns // (kernel[0] * kernel[1])
    outer = [height + 2 * padding[0], width + 2 * padding[1]]
    counts = [(outer[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1 for a in (0, 1)]
    with graph.inserting_before(node):
        cols = call(graph, aten.reshape.default, (source, [batch * channels, kernel[0], kernel[1], *counts]))
        total = None
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                part = call(graph, aten.select.int, (call(graph, aten.select.int, (cols, 1, i)), 1, j))
                placed = _place(graph, _spread(graph, part, counts, stride), (i * dilation[0], j * dilation[1]),
                                counts=counts, stride=stride, outer=outer)  # fmt: skip
                total = placed if total is None else call(graph, aten.add.Tensor, (total, placed))
        rows = call(graph, aten.slice.Tensor, (total, 1, padding[0], padding[0] + height))
        crop = call(graph, aten.slice.Tensor, (rows, 2, padding[1], padding[1] + width))
        out = call(graph, aten.reshape.default, (crop, [batch, channels, height, width]))
    node.replace_all_uses_with(out)
    graph.erase_node(node)
    return True


def _spread(graph: fx.Graph, part: fx.Node, counts: list[int], stride: list[int]) -> fx.Node:
    """[N, Lh, Lw] -> [N, (Lh-1)*sh+1, (Lw-1)*sw+1] with stride-1 zeros between the values (rank <= 4)."""
    n = shape_of(part)[0]
    for axis, (count, step) in enumerate(zip(counts, stride, strict=True)):
        if step == 1:
            continue
        other = counts[1 - axis] if axis == 0 else (counts[0] - 1) * stride[0] + 1
        lead = [n, count, 1, other] if axis == 0 else [n, other, count, 1]
        pad = [0, 0, 0, step - 1] if axis == 0 else [0, step - 1]
        grown = call(graph, aten.constant_pad_nd.default, (call(graph, aten.reshape.default, (part, lead)), pad, 0.0))
        merged = [n, count * step, other] if axis == 0 else [n, other, count * step]
        flat = call(graph, aten.reshape.default, (grown, merged))
        part = call(graph, aten.slice.Tensor, (flat, 1 + axis, 0, (count - 1) * step + 1))
    return part


def _place(graph: fx.Graph, part: fx.Node, offset: tuple[int, int], *, counts, stride, outer) -> fx.Node:
    """Zero-pad one kernel offset's values to the padded output's size, at that offset."""
    spans = [(counts[a] - 1) * stride[a] + 1 for a in (0, 1)]
    left, top = offset[1], offset[0]
    pad = [left, outer[1] - left - spans[1], top, outer[0] - top - spans[0]]
    return call(graph, aten.constant_pad_nd.default, (part, pad, 0.0))
