"""Pure tensor algebra of structural reparameterisation (ALGORITHMS.md section 3).

Everything here maps weights to weights; nothing touches a module graph. A per-channel affine
map ``y = s * x + t`` (an eval-mode BatchNorm, a layer scale, a constant multiply) is a
``Diag``; a convolution or linear layer is a ``ConvTerm`` / ``LinearTerm``. The maths runs in
float64 and is cast back at the end, so a fold adds no more rounding than one fp32 conv does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

WORK_DTYPE = torch.float64


class FoldRefused(ValueError):
    """A structure that looks foldable but is not (geometry, stride, groups): the message says why."""


@dataclass(frozen=True)
class Diag:
    """``y = s * x + t`` along one channel axis; ``shift=False`` promises t is identically zero."""

    s: Tensor
    t: Tensor

    @staticmethod
    def identity(channels: int) -> Diag:
        return Diag(torch.ones(channels, dtype=WORK_DTYPE), torch.zeros(channels, dtype=WORK_DTYPE))

    def then(self, other: Diag) -> Diag:
        """``other`` applied after ``self``."""
        return Diag(self.s * other.s, self.t * other.s + other.t)

    def plus(self, other: Diag, sign: float = 1.0) -> Diag:
        return Diag(self.s + sign * other.s, self.t + sign * other.t)


@dataclass(frozen=True)
class ConvTerm:
    """One convolution branch: weight [Cout, Cin/groups, *k] plus bias [Cout]."""

    weight: Tensor
    bias: Tensor
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.weight.shape[2:])

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups


@dataclass(frozen=True)
class LinearTerm:
    weight: Tensor  # [out, in]
    bias: Tensor  # [out]


def as_work(t: Tensor | None, like: int | None = None) -> Tensor:
    """A float64 copy of ``t`` (zeros of length ``like`` when ``t`` is None)."""
    if t is None:
        return torch.zeros(like, dtype=WORK_DTYPE)
    return t.detach().to(device="cpu", dtype=WORK_DTYPE).clone()


def bn_diag(bn_stats: dict[str, Tensor | None], *, eps: float) -> Diag:
    """BatchNorm in eval mode as ``s * x + t``: s = gamma / sqrt(var + eps), t = beta - mean * s."""
    var = as_work(bn_stats["running_var"])
    gamma = bn_stats.get("weight")
    s = (as_work(gamma) if gamma is not None else torch.ones_like(var)) / torch.sqrt(var + eps)
    t = as_work(bn_stats.get("bias"), like=len(var)) - as_work(bn_stats["running_mean"]) * s
    return Diag(s, t)


def conv_term(conv: nn.Module, *, padding: tuple[int, ...]) -> ConvTerm:
    """A conv module's weights in float64; ``padding`` explicit (a 'same' string resolved by the caller)."""
    out = conv.weight.shape[0]
    return ConvTerm(as_work(conv.weight), as_work(conv.bias, like=out), tuple(conv.stride),
                    tuple(padding), tuple(conv.dilation), conv.groups)  # fmt: skip


def linear_term(linear: nn.Linear) -> LinearTerm:
    return LinearTerm(as_work(linear.weight), as_work(linear.bias, like=linear.weight.shape[0]))


def _per_out(v: Tensor, ndim: int) -> Tensor:
    return v.reshape(-1, *([1] * (ndim - 1)))


def scale_output(term: ConvTerm | LinearTerm, diag: Diag) -> ConvTerm | LinearTerm:
    """``diag`` applied after the layer (Conv+BN, Linear+BN): W' = W*s per output, b' = b*s + t."""
    weight = term.weight * _per_out(diag.s, term.weight.ndim)
    return replace(term, weight=weight, bias=term.bias * diag.s + diag.t)


def _input_map(weight: Tensor, groups: int, v: Tensor) -> Tensor:
    """``v`` (one value per input channel) laid out like ``weight[:, :, ...]`` (groups respected)."""
    out, per_group = weight.shape[0], weight.shape[1]
    grid = v.reshape(groups, per_group).repeat_interleave(out // groups, dim=0)
    return grid.reshape(out, per_group, *([1] * (weight.ndim - 2)))


def scale_input(term: ConvTerm | LinearTerm, diag: Diag) -> ConvTerm | LinearTerm:
    """``diag`` applied before the layer (BN+Linear; BN+Conv only without zero padding)."""
    groups = term.groups if isinstance(term, ConvTerm) else 1
    if isinstance(term, ConvTerm) and any(term.padding) and bool(diag.t.abs().max() > 0):
        raise FoldRefused("a shift before a zero-padded conv changes the border: padding would not see it")
    s_map, t_map = _input_map(term.weight, groups, diag.s), _input_map(term.weight, groups, diag.t)
    bias = term.bias + (term.weight * t_map).flatten(1).sum(1)
    return replace(term, weight=term.weight * s_map, bias=bias)


def pad_kernel(weight: Tensor, kernel: tuple[int, ...]) -> Tensor:
    """Zero-pad a kernel to ``kernel`` around its centre (a 1x1 becomes the centre of a 3x3)."""
    pads: list[int] = []
    for have, want in reversed(list(zip(weight.shape[2:], kernel, strict=True))):
        if (want - have) % 2:
            raise FoldRefused(f"kernel {have} cannot be centred in kernel {want}")
        pads += [(want - have) // 2] * 2
    return nn.functional.pad(weight, pads)


def regroup(weight: Tensor, groups: int, new_groups: int) -> Tensor:
    """A grouped kernel rewritten for fewer groups (``new_groups`` divides ``groups``), zeros elsewhere."""
    if groups == new_groups:
        return weight
    out, per_group = weight.shape[:2]
    in_channels = per_group * groups
    new_per_group = in_channels // new_groups
    result = weight.new_zeros(out, new_per_group, *weight.shape[2:])
    for o in range(out):
        first_in = (o // (out // groups)) * per_group - (o // (out // new_groups)) * new_per_group
        result[o, first_in : first_in + per_group] = weight[o]
    return result


def diag_as_conv(diag: Diag, *, like: ConvTerm) -> ConvTerm:
    """An identity branch scaled by ``diag`` as a kernel of ``like``'s geometry (needs stride 1)."""
    if any(s != 1 for s in like.stride):
        raise FoldRefused(f"an identity branch cannot join a stride-{max(like.stride)} conv: only stride 1 folds")
    channels, per_group = len(diag.s), len(diag.s) // like.groups
    weight = torch.zeros(channels, per_group, *like.kernel, dtype=WORK_DTYPE)
    centre = tuple(k // 2 for k in like.kernel)
    for c in range(channels):
        weight[(c, c % per_group, *centre)] = diag.s[c]
    return replace(like, weight=weight, bias=diag.t.clone())
