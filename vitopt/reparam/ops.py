"""What a traced node is, in the vocabulary of folding: layer, BatchNorm, scale, reshape, pass-through.

Only structure is read here (op, target, module attributes, constant shapes), never activations.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from vitopt.reparam.trace import shape_of

LAYER_TYPES = {nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv", nn.Linear: "linear"}
PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
PASS_METHODS = {"contiguous"}
RESHAPE_METHODS = {"view", "reshape", "flatten", "reshape_as", "view_as", "squeeze", "unsqueeze"}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
PERMUTE_METHODS = {"transpose", "permute"}
PERMUTE_FUNCTIONS = {torch.transpose, torch.permute}
ARITH = {
    operator.add: "add", torch.add: "add", "add": "add", "add_": "add", operator.iadd: "add",
    operator.sub: "sub", torch.sub: "sub", "sub": "sub", "sub_": "sub", operator.isub: "sub",
    operator.mul: "mul", torch.mul: "mul", "mul": "mul", "mul_": "mul", operator.imul: "mul",
    operator.truediv: "div", torch.div: "div", "div": "div", "div_": "div", operator.itruediv: "div",
    operator.neg: "neg", torch.neg: "neg", "neg": "neg",
}  # fmt: skip


def get_attr_value(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def layer_space(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """'conv' or 'linear' for a call of a plain nn.ConvNd (zero padding) / nn.Linear, else None."""
    module = module_of(gm, node)
    space = LAYER_TYPES.get(type(module))
    if space == "conv" and (module.padding_mode != "zeros" or conv_padding(module) is None):
        return None
    return space


def conv_padding(conv: nn.Module) -> tuple[int, ...] | None:
    """Explicit padding of a conv; None for 'same' padding that is not symmetric (even kernels)."""
    if isinstance(conv.padding, tuple):
        return conv.padding
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    reach = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
    return tuple(r // 2 for r in reach) if all(r % 2 == 0 for r in reach) else None


def is_pass_through(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Ops that return their input unchanged at inference (Identity, Dropout, contiguous)."""
    if node.op == "call_module":
        module = module_of(gm, node)
        return isinstance(module, PASS_MODULES) and not (module.training and not isinstance(module, nn.Identity))
    return node.op == "call_method" and node.target in PASS_METHODS


def is_reshape(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in RESHAPE_METHODS
    return node.op == "call_function" and node.target in RESHAPE_FUNCTIONS


def is_flatten_module(gm: fx.GraphModule, node: fx.Node) -> bool:
    return isinstance(module_of(gm, node), nn.Flatten)


def is_permute(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in PERMUTE_METHODS
    return node.op == "call_function" and node.target in PERMUTE_FUNCTIONS


def arith_kind(node: fx.Node) -> str | None:
    if node.op in ("call_function", "call_method"):
        return ARITH.get(node.target)
    return None


@dataclass(frozen=True)
class BatchNormCall:
    """A BatchNorm found in the graph: its statistics, the module that owns them, and any blocker."""

    path: str  # owner module, relative to the traced level
    stats: dict[str, Any]
    eps: float
    problem: str | None


def _problem(training: bool, stats: dict[str, Any]) -> str | None:
    if stats.get("running_mean") is None or stats.get("running_var") is None:
        return "no running statistics (track_running_stats=False): it normalises with batch statistics"
    if training:
        return "in training mode: it normalises with batch statistics, not a fixed affine map"
    return None


def batch_norm_call(gm: fx.GraphModule, node: fx.Node) -> BatchNormCall | None:
    """The BatchNorm this node computes (an nn.BatchNormNd call or F.batch_norm), else None."""
    module = module_of(gm, node)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and type(module).__module__.startswith("torch.nn"):
        stats = {k: getattr(module, k) for k in ("running_mean", "running_var", "weight", "bias")}
        return BatchNormCall(node.target, stats, module.eps, _problem(module.training, stats))
    if node.op == "call_function" and node.target is F.batch_norm:
        return _functional_batch_norm(gm, node)
    return None


def _functional_batch_norm(gm: fx.GraphModule, node: fx.Node) -> BatchNormCall | None:
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    bound = {**dict(zip(names, node.args, strict=False)), **node.kwargs}
    stats, owners = {}, set()
    for key in ("running_mean", "running_var", "weight", "bias"):
        arg = bound.get(key)
        if isinstance(arg, fx.Node):
            if arg.op != "get_attr":
                return None
            owners.add(arg.target.rpartition(".")[0])
            stats[key] = get_attr_value(gm, arg.target)
        else:
            stats[key] = arg
    training = bound.get("training", False)
    if len(owners) != 1 or not isinstance(training, bool):
        return None
    return BatchNormCall(owners.pop(), stats, float(bound.get("eps", 1e-5)), _problem(training, stats))


def tensor_operand(node: fx.Node) -> fx.Node | None:
    """The first tensor-valued node argument (the data input of a unary or affine op)."""
    return next((a for a in node.args if isinstance(a, fx.Node) and shape_of(a) is not None), None)
