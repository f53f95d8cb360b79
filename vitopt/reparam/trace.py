"""Tracing one module at a time with torch.fx, plus what one real forward pass tells us.

A model is analysed bottom-up, one module (a *level*) at a time: each level is traced with
torch.fx, built-in layers (and any descendant that cannot be traced) kept as leaves. Tracing runs
on a *shadow*: a copy of the module tree that shares every tensor, so Python side effects of
tracing (timm's LeViT caches a value per device) never touch the model. Shapes come from running
the traced graph on fake tensors of the sizes seen in one real forward pass (:func:`probe`).
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.fake_tensor_prop import FakeTensorProp
from torch.utils._pytree import tree_map

from vitopt.errors import one_line


class TraceFailed(Exception):
    """torch.fx could not trace a module (data-dependent control flow, unsupported Python).

    ``culprit`` is the level-relative path of the module whose own forward failed (None: the
    traced module itself), read from the tracer's module stack at the moment of failure.
    """

    def __init__(self, message: str, culprit: str | None) -> None:
        super().__init__(message)
        self.culprit = culprit


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class Probe:
    """Per module object: how often it ran in one forward pass and what its first call received."""

    calls: dict[int, int] = field(default_factory=dict)
    inputs: dict[int, tuple[tuple, dict]] = field(default_factory=dict)
    outputs: dict[int, Any] = field(default_factory=dict)

    def calls_of(self, module: nn.Module) -> int:
        return self.calls.get(id(module), 0)


def _spec(value: Any) -> Any:
    return TensorSpec(tuple(value.shape), value.dtype) if isinstance(value, torch.Tensor) else value


def probe(model: nn.Module, sample: torch.Tensor) -> Probe:
    """Count calls and record input shapes of every module during one forward pass on ``sample``."""
    result = Probe()

    def before(module, args, kwargs):
        result.calls[id(module)] = result.calls.get(id(module), 0) + 1
        result.inputs.setdefault(id(module), (tree_map(_spec, args), tree_map(_spec, kwargs)))

    def after(module, _args, output):
        result.outputs.setdefault(id(module), tree_map(_spec, output))

    handles = [m.register_forward_pre_hook(before, with_kwargs=True) for m in model.modules()]
    handles += [m.register_forward_hook(after) for m in model.modules()]
    forward_with_hooks(model, sample, handles)
    return result


def forward_with_hooks(model, sample, handles) -> None:
    """One no-grad forward pass that the hooks observe; they are removed whatever happens."""
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()


def is_builtin_leaf(module: nn.Module) -> bool:
    """What torch.fx treats as a leaf by default: torch.nn's own layers (not containers)."""
    return fx.Tracer().is_leaf_module(module, "")


class _LevelTracer(fx.Tracer):
    def __init__(self, opaque: set[str]) -> None:
        super().__init__()
        self.opaque = opaque

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self.opaque or super().is_leaf_module(m, module_qualified_name)


def shadow_of(module: nn.Module) -> nn.Module:
    """A copy of the module tree sharing every parameter and buffer with ``module``."""
    memo = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return copy.deepcopy(module, memo)


def concrete_args(module: nn.Module, recorded: tuple[tuple, dict] | None) -> dict[str, Any]:
    """The non-tensor arguments ``module`` was called with (flags like ``pre_logits``), to trace as constants."""
    if recorded is None:
        return {}
    try:
        bound = inspect.signature(module.forward).bind(*recorded[0], **recorded[1])
    except TypeError:
        return {}
    bound.apply_defaults()
    plain = (bool, int, float, str, type(None))
    return {k: v for k, v in bound.arguments.items() if isinstance(v, plain) and not isinstance(v, TensorSpec)}


def trace(module: nn.Module, *, opaque: set[str], recorded: tuple[tuple, dict] | None = None) -> fx.GraphModule:
    """The fx graph of ``module`` (on a shadow); ``opaque`` names descendants kept as leaves.

    Arguments ``module`` received as plain values in the probe (``pre_logits=False``) are traced
    as constants, so ``if pre_logits:`` does not stop the trace.
    """
    shadow, tracer, constants = shadow_of(module), _LevelTracer(opaque), concrete_args(module, recorded)
    try:
        graph = tracer.trace(shadow, concrete_args=constants or None)
    except Exception as err:  # fx raises TraceError, TypeError, AttributeError, ...
        stack = list(tracer.module_stack.values())
        message = one_line(err, limit=200, with_type=True)
        raise TraceFailed(message, stack[-1][0] if stack else None) from err
    _restore_parameter_names(graph, constants)
    return fx.GraphModule(shadow, graph, class_name=type(module).__name__)


def _restore_parameter_names(graph: fx.Graph, constants: dict[str, Any]) -> None:
    """Give the placeholders of arguments traced as constants their parameters' names back.

    fx calls such a placeholder ``<name>_1``: a GraphModule of the trace would take ``shared_rel_pos_bias_1``
    where the level's caller passes ``shared_rel_pos_bias=None`` (BEiT's blocks), and shape propagation, which
    feeds recorded keywords by placeholder name, would give it the default instead of the recorded value.
    """
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    taken = {n.target for n in placeholders}
    for node in placeholders:
        name = node.target.removesuffix("_1")
        if name in constants and name not in taken:
            node.target = name  # the node keeps its name: the generated forward binds it to the parameter


def is_none_guard(node: fx.Node) -> bool:
    """fx's check that an argument traced as the constant None is still None (fx does not keep it from DCE)."""
    return node.op == "call_function" and getattr(node.target, "__name__", None) == "_assert_is_none"


def _faker(mode: FakeTensorMode):
    def fake(value):
        return mode.from_tensor(torch.empty(value.shape, dtype=value.dtype)) if isinstance(value, TensorSpec) else value

    return fake


class _ShapeProp(FakeTensorProp):
    """Fake-tensor propagation that takes opaque modules' outputs from the probe instead of running them
    (their Python forward may branch on values, which fake tensors do not have)."""

    def __init__(self, gm: fx.GraphModule, mode: FakeTensorMode, known: dict[str, Any]) -> None:
        super().__init__(gm, mode)
        self.known, self.fake = known, _faker(mode)

    def call_module(self, target, args, kwargs):
        if target in self.known:
            return tree_map(self.fake, self.known[target])
        return super().call_module(target, args, kwargs)


def _fake_args(gm: fx.GraphModule, recorded: tuple[tuple, dict], mode: FakeTensorMode) -> list:
    args, kwargs = recorded
    fake = _faker(mode)
    args, kwargs = tree_map(fake, args), tree_map(fake, kwargs)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    values = list(args[: len(placeholders)])
    for node in placeholders[len(values) :]:
        values.append(kwargs[node.target] if node.target in kwargs else (node.args[0] if node.args else None))
    return values


def propagate_shapes(gm: fx.GraphModule, recorded: tuple[tuple, dict] | None, known: dict[str, Any]) -> str | None:
    """Annotate every node's ``meta['val']`` with a fake tensor; where that is not possible, why.

    ``known`` gives the recorded outputs of modules that must not run (opaque ones), by path.
    """
    if recorded is None:
        return "the module was never called on the calibration images"
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    try:
        with torch.no_grad():
            _ShapeProp(gm, mode, known).propagate_dont_convert_inputs(*_fake_args(gm, recorded, mode))
    except Exception as err:  # an op without a fake implementation, a data-dependent shape, ...
        return one_line(err, limit=200, with_type=True)
    return None


def shape_of(node: fx.Node) -> tuple[int, ...] | None:
    value = node.meta.get("val") if isinstance(node, fx.Node) else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def innermost_module(node: fx.Node) -> str:
    """Qualified name (relative to the traced level) of the module whose forward emitted ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else ""


def module_keys(node: fx.Node) -> list[str]:
    """The call keys (``path`` or ``path@n`` for a repeated call) of every module around ``node``."""
    return list((node.meta.get("nn_module_stack") or {}).keys())


SHAPE_TEMPLATE_METHODS = {"reshape_as", "view_as", "expand_as", "type_as"}


def reads_data(user: fx.Node, node: fx.Node) -> bool:
    """Whether ``user`` reads the values of ``node`` (not only its shape, dtype or rank)."""
    if user.op == "output":
        return True
    if shape_of(user) is None:
        return False  # x.shape, x.ndim, an assert: metadata only
    template = user.op == "call_method" and user.target in SHAPE_TEMPLATE_METHODS
    return not (template and user.args[0] is not node)


def data_users(node: fx.Node) -> list[fx.Node]:
    return [u for u in node.users if reads_data(u, node)]
