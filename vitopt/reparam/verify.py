"""Proof that a fold changed nothing: the same outputs on real images, and where they part if not."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from vitopt.reparam.trace import forward_with_hooks


@dataclass(frozen=True)
class Equivalence:
    max_abs_diff: float
    max_rel_diff: float  # max |a - b| / (|b| + atol), a scale-free view of the same check
    n_images: int
    rtol: float
    atol: float
    passed: bool

    def to_dict(self) -> dict:
        return {k: (round(v, 9) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def outputs(module: nn.Module, images: torch.Tensor, *, chunk: int = 8,
            dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:  # fmt: skip
    """Every output tensor of ``module`` on ``images`` (logits, or each leaf of a tuple/dict output), as ``dtype``."""
    parts = []
    with torch.no_grad():
        for i in range(0, len(images), chunk):
            parts.append([t.detach().to(dtype) for t in tree_leaves(module(images[i : i + chunk]))])
    return [torch.cat(column) for column in zip(*parts, strict=True)]


def compare(reference: list[torch.Tensor], candidate: list[torch.Tensor], *, rtol: float, atol: float,
            n_images: int) -> Equivalence:  # fmt: skip
    """``torch.allclose`` semantics (|a - b| <= atol + rtol * |b|) over every output tensor."""
    if len(reference) != len(candidate) or any(a.shape != b.shape for a, b in zip(reference, candidate, strict=True)):
        return Equivalence(float("inf"), float("inf"), n_images, rtol, atol, False)
    diffs = [(b - a).abs() for a, b in zip(reference, candidate, strict=True)]
    max_abs = max(float(d.max()) for d in diffs)
    max_rel = max(float((d / (a.abs() + atol)).max()) for d, a in zip(diffs, reference, strict=True))
    passed = all(torch.allclose(b, a, rtol=rtol, atol=atol) for a, b in zip(reference, candidate, strict=True))
    return Equivalence(max_abs, max_rel, n_images, rtol, atol, passed)


def _record(model: nn.Module, images: torch.Tensor, skip: set[str]) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}

    def hook_for(path):
        def hook(_module, _args, output):
            if isinstance(output, torch.Tensor) and path not in seen:
                seen[path] = output.detach().float().clone()

        return hook

    handles = [m.register_forward_hook(hook_for(p)) for p, m in model.named_modules() if p not in skip]
    forward_with_hooks(model, images, handles)
    return seen


def first_divergence(original: nn.Module, folded: nn.Module, images: torch.Tensor, *, rtol: float, atol: float,
                     skip: set[str]) -> str | None:  # fmt: skip
    """The first module (in execution order) whose output differs between the two models.

    ``skip`` names modules whose output is meant to change (a conv that absorbed the BatchNorm
    after it); every other module present in both models must compute the same tensor.
    """
    before, after = _record(original, images, skip), _record(folded, images, skip)
    for path, out in after.items():
        ref = before.get(path)
        if ref is not None and ref.shape == out.shape and _differs(ref, out, rtol=rtol, atol=atol):
            return path or "(model)"
    return None


def _differs(ref: torch.Tensor, out: torch.Tensor, *, rtol: float, atol: float) -> bool:
    return float((out - ref).abs().max()) > atol + rtol * float(ref.abs().max())
