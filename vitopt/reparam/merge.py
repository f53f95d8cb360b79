"""Parallel branches of the same input summed into one layer (RepVGG, MobileOne, RepMixer, two heads).

A branch is a ``ConvTerm``/``LinearTerm`` (a layer with its BatchNorms folded in) or a ``Diag``
(the identity, possibly through a BatchNorm or a scale). Branches merge when they share stride,
dilation and centre: kernels are zero-padded to the largest, groups reduced to their gcd, and an
identity becomes a delta at the kernel centre (stride 1 only).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import nn

from vitopt.reparam.algebra import (
    WORK_DTYPE,
    ConvTerm,
    Diag,
    FoldRefused,
    LinearTerm,
    diag_as_conv,
    pad_kernel,
    regroup,
)

Branch = tuple[float, ConvTerm | LinearTerm | Diag]


def _signed(sign: float, term):
    if isinstance(term, Diag):
        return Diag(term.s * sign, term.t * sign)
    return replace(term, weight=term.weight * sign, bias=term.bias * sign)


def _offset(term: ConvTerm) -> tuple[int, ...]:
    """Where the kernel centre lands relative to the output position: padding minus centre reach."""
    return tuple(p - d * (k // 2) for p, d, k in zip(term.padding, term.dilation, term.kernel, strict=True))


def _common(values: set, what: str):
    if len(values) > 1:
        raise FoldRefused(f"branches differ in {what}: {sorted(values)}")
    return values.pop()


def _centre(convs: list[ConvTerm], kernel: tuple[int, ...], identity: bool) -> tuple[int, ...]:
    if any((k - c) % 2 for conv in convs for k, c in zip(kernel, conv.kernel, strict=True)):
        raise FoldRefused("kernels of even and odd size cannot share a centre")
    offset = _common({_offset(c) for c in convs}, "padding relative to the kernel centre")
    if identity and any(offset):
        raise FoldRefused("an identity branch needs 'same' padding on every conv branch")
    return offset


def plan_conv(convs: list[ConvTerm], *, identity: bool) -> ConvTerm:
    """The merged conv's geometry (weight shape only, on the meta device); refuses what cannot share one.

    Only shapes and conv attributes are read, so the analysis calls it with meta-device weights.
    """
    if not convs:
        raise FoldRefused("no conv branch: a sum of identities is not a layer")
    stride = _common({c.stride for c in convs}, "stride")
    if identity and any(s != 1 for s in stride):
        raise FoldRefused(f"an identity branch cannot join a stride-{max(stride)} conv: only stride 1 folds")
    dilation = _common({c.dilation for c in convs if max(c.kernel) > 1} or {convs[0].dilation}, "dilation")
    kernel = tuple(max(k) for k in zip(*(c.kernel for c in convs), strict=True))
    offset = _centre(convs, kernel, identity)
    out, in_channels = convs[0].weight.shape[0], convs[0].in_channels
    if identity and out != in_channels:
        raise FoldRefused("an identity branch needs as many input as output channels")
    groups = math.gcd(*(c.groups for c in convs))
    padding = tuple(o + d * (k // 2) for o, d, k in zip(offset, dilation, kernel, strict=True))
    weight = torch.empty(out, in_channels // groups, *kernel, device="meta")
    return ConvTerm(weight, torch.empty(out, device="meta"), stride, padding, dilation, groups)


def merge_conv(branches: list[Branch]) -> ConvTerm:
    """One conv equal to the sum of ``branches`` (each ``(sign, term)``)."""
    terms = [_signed(sign, term) for sign, term in branches]
    convs = [t for t in terms if isinstance(t, ConvTerm)]
    diags = [t for t in terms if isinstance(t, Diag)]
    plan = plan_conv(convs, identity=bool(diags))
    weight = torch.zeros(plan.weight.shape, dtype=WORK_DTYPE)
    bias = torch.zeros(plan.weight.shape[0], dtype=WORK_DTYPE)
    for c in convs:
        weight += regroup(pad_kernel(c.weight, plan.kernel), c.groups, plan.groups)
        bias += c.bias
    for d in diags:
        identity = diag_as_conv(d, like=replace(plan, weight=weight))
        weight, bias = weight + identity.weight, bias + identity.bias
    return replace(plan, weight=weight, bias=bias)


def plan_linear(shapes: list[tuple[int, ...]], *, identity: bool) -> None:
    """Refuses linear branches that cannot be one layer (different shapes, identity on a non-square)."""
    if not shapes:
        raise FoldRefused("no linear branch: a sum of identities is not a layer")
    shape = _common(set(shapes), "shape")
    if identity and shape[0] != shape[1]:
        raise FoldRefused("an identity branch needs as many input as output features")


def merge_linear(branches: list[Branch]) -> LinearTerm:
    """One linear layer equal to the sum of ``branches`` (two distilled heads, a residual linear)."""
    terms = [_signed(sign, term) for sign, term in branches]
    linears = [t for t in terms if isinstance(t, LinearTerm)]
    diags = [t for t in terms if isinstance(t, Diag)]
    plan_linear([tuple(t.weight.shape) for t in linears], identity=bool(diags))
    weight, bias = sum(t.weight for t in linears), sum(t.bias for t in linears)
    for d in diags:
        weight, bias = weight + torch.diag(d.s), bias + d.t
    return LinearTerm(weight, bias)


def conv_module(term: ConvTerm, *, like: nn.Module) -> nn.Module:
    """A fresh ``nn.ConvNd`` holding ``term``, on ``like``'s device and dtype."""
    cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[term.weight.ndim - 2]
    module = cls(term.in_channels, term.weight.shape[0], term.kernel, stride=term.stride, padding=term.padding,
                 dilation=term.dilation, groups=term.groups, bias=True)  # fmt: skip
    return _filled(module, term, like=like)


def linear_module(term: LinearTerm, *, like: nn.Module) -> nn.Linear:
    module = nn.Linear(term.weight.shape[1], term.weight.shape[0], bias=True)
    return _filled(module, term, like=like)


def _filled(module: nn.Module, term: ConvTerm | LinearTerm, *, like: nn.Module) -> nn.Module:
    dtype, device = like.weight.dtype, like.weight.device
    with torch.no_grad():
        module.weight.copy_(term.weight.to(dtype))
        module.bias.copy_(term.bias.to(dtype))
    return module.to(device=device, dtype=dtype).train(like.training)


def write_term(module: nn.Module, term: ConvTerm | LinearTerm) -> None:
    """Store ``term`` into an existing conv/linear module in place, adding a bias where it had none."""
    dtype, device = module.weight.dtype, module.weight.device
    with torch.no_grad():
        module.weight.copy_(term.weight.to(dtype))
        if module.bias is None:
            module.bias = nn.Parameter(torch.empty(term.bias.shape, dtype=dtype, device=device))
        module.bias.copy_(term.bias.to(dtype))
