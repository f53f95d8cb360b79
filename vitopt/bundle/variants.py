"""Operator forms of one ONNX graph, for a phone's accelerator to choose from.

ONNX Runtime's NNAPI and CoreML execution providers take some fused operators (LayerNormalization,
Gelu) on some versions only; each one they refuse cuts the graph into another partition, and every
partition boundary is a copy between the accelerator and the CPU. The same maths written with
elementary operators (ReduceMean, Sub, Sqrt, Div, Erf...) may stay on the accelerator. Which form
the checker rates better is measured per model (``vitopt.bundle.contents`` keeps the best verified
one), never assumed: a decomposed graph has more nodes and is slower where the fused one runs.
onnxslim and onnxruntime fuse in the other direction only, so the decomposition is written here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

DECOMPOSABLE = ("LayerNormalization", "Gelu")


def decompose(source: Path, dest: Path, *, ops: tuple[str, ...]) -> int:
    """A copy of ``source`` with each node of ``ops`` written in elementary operators; returns how many."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(source)))  # ranks, for LayerNormalization's axis
    graph, rewritten, nodes = model.graph, 0, []
    for node in graph.node:
        expand = _RULES.get(node.op_type) if node.op_type in ops else None
        if expand is None:
            nodes.append(node)
            continue
        nodes += expand(node, graph, _namer(node))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return rewritten


def _namer(node) -> Callable[[str], str]:
    base = node.name or node.output[0]
    return lambda suffix: f"{base}/vitopt_{suffix}"


def _const(graph, name: str, value: float | list[int], dtype=np.float32) -> str:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return name


def _layer_norm(node, graph, name) -> list:
    """y = (x - mean) / sqrt(var + eps) * scale + bias over the axes from ``axis`` on (ONNX's definition)."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    axis, eps = attrs.get("axis", -1), attrs.get("epsilon", 1e-5)
    rank = _rank(graph, node.input[0])
    if axis >= 0 and rank is None:  # which axes it normalises is unknown: keep the fused operator
        return [node]
    axes = _const(graph, name("axes"), list(range(axis, 0)) if axis < 0 else list(range(axis, rank)), np.int64)
    x, scale, out = node.input[0], node.input[1], node.output[0]
    made = [
        helper.make_node("ReduceMean", [x, axes], [name("mean")], keepdims=1),
        helper.make_node("Sub", [x, name("mean")], [name("centred")]),
        helper.make_node("Mul", [name("centred"), name("centred")], [name("squared")]),
        helper.make_node("ReduceMean", [name("squared"), axes], [name("var")], keepdims=1),
        helper.make_node("Add", [name("var"), _const(graph, name("eps"), eps)], [name("var_eps")]),
        helper.make_node("Sqrt", [name("var_eps")], [name("std")]),
        helper.make_node("Div", [name("centred"), name("std")], [name("normed")]),
    ]
    has_bias = len(node.input) > 2 and node.input[2]
    made.append(helper.make_node("Mul", [name("normed"), scale], [name("scaled") if has_bias else out]))
    if has_bias:
        made.append(helper.make_node("Add", [name("scaled"), node.input[2]], [out]))
    return made


def _rank(graph, tensor: str) -> int | None:
    for info in [*graph.value_info, *graph.input, *graph.output]:
        if info.name == tensor and info.type.tensor_type.HasField("shape"):
            return len(info.type.tensor_type.shape.dim)
    return None


def _gelu(node, graph, name) -> list:
    """Exact Gelu, x/2 * (1 + erf(x / sqrt 2)), with erf itself written out: NNAPI has no Erf, and ONNX
    Runtime fuses an Erf-based pattern straight back into Gelu. erf(z) = sign(z) (1 - poly(t) exp(-z^2)),
    t = 1 / (1 + p|z|) (Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32 rounding of the
    activations that follow). The tanh form where the node asked for it."""
    from onnx import helper

    approximate = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "approximate"), b"none")
    if approximate in (b"tanh", "tanh"):
        return _gelu_tanh(node, graph, name)
    x, out, c = node.input[0], node.output[0], lambda key, v: _const(graph, name(key), v)
    made = [
        helper.make_node("Mul", [x, c("rsqrt2", 1 / math.sqrt(2.0))], [name("z")]),
        helper.make_node("Abs", [name("z")], [name("a")]),
        helper.make_node("Mul", [name("a"), c("p", _AS_P)], [name("pa")]),
        helper.make_node("Add", [name("pa"), c("one", 1.0)], [name("den")]),
        helper.make_node("Div", [c("one_", 1.0), name("den")], [name("t")]),
        *_horner(name("t"), _AS_COEFFS, out=name("poly"), c=c, name=name),
        helper.make_node("Mul", [name("a"), name("a")], [name("a_sq")]),
        helper.make_node("Mul", [name("a_sq"), c("minus", -1.0)], [name("neg_a2")]),
        helper.make_node("Exp", [name("neg_a2")], [name("gauss")]),
        helper.make_node("Mul", [name("poly"), name("gauss")], [name("tail")]),
        helper.make_node("Sub", [c("one__", 1.0), name("tail")], [name("erf_abs")]),
        helper.make_node("Add", [name("a"), c("tiny", 1e-30)], [name("a_safe")]),
        helper.make_node("Div", [name("z"), name("a_safe")], [name("sign")]),  # 0 at z = 0, where erf is 0
        helper.make_node("Mul", [name("sign"), name("erf_abs")], [name("erf")]),
        helper.make_node("Add", [name("erf"), c("one___", 1.0)], [name("one_plus")]),
        helper.make_node("Mul", [x, name("one_plus")], [name("x_times")]),
        helper.make_node("Mul", [name("x_times"), c("half", 0.5)], [out]),
    ]
    return made


_AS_P = 0.3275911
_AS_COEFFS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5 .. a1


def _horner(t: str, coeffs: tuple[float, ...], *, out: str, c, name) -> list:
    """t * (a1 + t * (a2 + ... + t * a5)) as Mul/Add nodes."""
    from onnx import helper

    nodes, acc = [], c("a5", coeffs[0])
    for i, coeff in enumerate(coeffs[1:]):
        nodes.append(helper.make_node("Mul", [acc, t], [name(f"h{i}")]))
        nodes.append(helper.make_node("Add", [name(f"h{i}"), c(f"coef{4 - i}", coeff)], [name(f"s{i}")]))
        acc = name(f"s{i}")
    nodes.append(helper.make_node("Mul", [acc, t], [out]))
    return nodes


def _gelu_tanh(node, graph, name) -> list:
    from onnx import helper

    x, out = node.input[0], node.output[0]
    return [
        helper.make_node("Mul", [x, x], [name("x2")]),
        helper.make_node("Mul", [name("x2"), x], [name("x3")]),
        helper.make_node("Mul", [name("x3"), _const(graph, name("c"), 0.044715)], [name("cx3")]),
        helper.make_node("Add", [x, name("cx3")], [name("inner")]),
        helper.make_node("Mul", [name("inner"), _const(graph, name("k"), math.sqrt(2 / math.pi))], [name("arg")]),
        helper.make_node("Tanh", [name("arg")], [name("tanh")]),
        helper.make_node("Add", [name("tanh"), _const(graph, name("one"), 1.0)], [name("one_plus")]),
        helper.make_node("Mul", [x, name("one_plus")], [name("x_times")]),
        helper.make_node("Mul", [name("x_times"), _const(graph, name("half"), 0.5)], [out]),
    ]


_RULES = {"LayerNormalization": _layer_norm, "Gelu": _gelu}


def present(path: Path) -> set[str]:
    """The operator types in the graph at ``path``."""
    import onnx

    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
