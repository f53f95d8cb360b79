"""Blocks that know how to fold themselves: one protocol, and adapters for timm's three method names.

A block implements :class:`Reparameterizable` by defining ``reparameterize()``, which returns the
module that replaces it (or None when it changed in place). timm spells the same idea three ways
(``fuse()`` returns a new module; ``reparameterize()`` and ``switch_to_deploy()`` work in place);
:func:`native_method` finds whichever a block has. Every native call is checked on the block's real
input from the calibration batch and undone when the output changes (or the method raises).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from vitopt.reparam.trace import forward_with_hooks

NATIVE_METHODS = ("fuse", "reparameterize", "switch_to_deploy")


@runtime_checkable
class Reparameterizable(Protocol):
    """A module that can replace itself by an equivalent inference-time module."""

    def reparameterize(self) -> nn.Module | None:
        """Return the replacement module, or None after changing ``self`` in place."""
        ...


def native_method(module: nn.Module) -> str | None:
    """The first of timm's fold methods ``module`` defines (in timm's order of preference)."""
    return next((m for m in NATIVE_METHODS if callable(getattr(module, m, None))), None)


def call_native(module: nn.Module, method: str) -> nn.Module:
    with torch.no_grad():
        result = getattr(module, method)()
    return result if isinstance(result, nn.Module) else module


@dataclass
class NativeRecord:
    applied: dict[str, str] = field(default_factory=dict)  # module path -> "Class.method"
    refused: dict[str, str] = field(default_factory=dict)  # module path -> reason


def _outputs_close(before, after, *, rtol: float, atol: float) -> tuple[bool, float]:
    a, b = torch.utils._pytree.tree_leaves(before), torch.utils._pytree.tree_leaves(after)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return False, float("inf")
    diff = max(((x - y).abs().max().item() for x, y in zip(a, b, strict=True)), default=0.0)
    return all(torch.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(a, b, strict=True)), diff


class NativeFolder:
    """Calls blocks' own fold methods top-down, as timm's ``reparameterize_model`` walks a model."""

    def __init__(self, *, select, rtol: float, atol: float) -> None:
        self.select, self.rtol, self.atol = select, rtol, atol
        self.record, self.inputs = NativeRecord(), {}

    def run(self, model: nn.Module, sample: torch.Tensor) -> nn.Module:
        chosen = [m for p, m in model.named_modules() if p and native_method(m) and self.select(p, m)]
        if chosen:
            self._capture(model, sample, chosen)
            self._visit(model, "")
        return model

    def _capture(self, model: nn.Module, sample: torch.Tensor, chosen: list[nn.Module]) -> None:
        def hook(module, args, kwargs):
            self.inputs.setdefault(id(module), copy.deepcopy((args, kwargs)))

        handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in chosen]
        forward_with_hooks(model, sample, handles)

    def _visit(self, parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            path = f"{prefix}.{name}" if prefix else name
            method = native_method(child)
            if method and self.select(path, child):
                child = self._fold(child, method, path)
                setattr(parent, name, child)
            self._visit(child, path)

    def _fold(self, block: nn.Module, method: str, path: str) -> nn.Module:
        recorded = self.inputs.get(id(block))
        if recorded is None:
            self.record.refused[path] = "did not run on the calibration batch, so its fold cannot be checked"
            return block
        original, label = copy.deepcopy(block), f"{type(block).__name__}.{method}"
        try:
            folded = call_native(block, method)
            with torch.no_grad():
                ok, diff = _outputs_close(original(*recorded[0], **recorded[1]), folded(*recorded[0], **recorded[1]),
                                          rtol=self.rtol, atol=self.atol)  # fmt: skip
        except Exception as err:  # a block's own method can fail in any way; keep the block as it was
            self.record.refused[path] = f"{label}() failed: {type(err).__name__}: {err}"
            return original
        if not ok:
            self.record.refused[path] = f"{label}() changed the block's output (max abs diff {diff:.3g}): undone"
            return original
        self.record.applied[path] = label
        return folded.train(original.training)
