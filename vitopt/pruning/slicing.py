"""Keep-index slicing of the layers a pruned transformer is made of, shared by NViT and DIMAP's
structured mode. Each function replaces parameters with their kept slice and fixes the layer's
size attributes, so the module is a smaller, ordinary PyTorch module afterwards."""

from __future__ import annotations

import torch
from torch import nn


def slice_param(owner: nn.Module, name: str, index: torch.Tensor, *, axis: int) -> None:
    param = getattr(owner, name, None)
    if param is None:
        return
    kept = param.detach().index_select(axis, index.to(param.device)).clone()
    setattr(owner, name, nn.Parameter(kept, requires_grad=param.requires_grad))


def slice_linear(linear: nn.Linear, *, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> None:
    """``rows``: kept output features (weight rows and bias); ``cols``: kept input features."""
    if rows is not None:
        slice_param(linear, "weight", rows, axis=0)
        slice_param(linear, "bias", rows, axis=0)
        linear.out_features = len(rows)
    if cols is not None:
        slice_param(linear, "weight", cols, axis=1)
        linear.in_features = len(cols)


def slice_norm(norm: nn.Module, index: torch.Tensor) -> None:
    """A LayerNorm (or any norm with per-channel weight/bias over the last dimension)."""
    if isinstance(norm, nn.Identity):
        return
    slice_param(norm, "weight", index, axis=0)
    slice_param(norm, "bias", index, axis=0)
    if hasattr(norm, "normalized_shape"):
        norm.normalized_shape = (len(index),)


def slice_conv_out(conv: nn.Conv2d, index: torch.Tensor) -> None:
    slice_param(conv, "weight", index, axis=0)
    slice_param(conv, "bias", index, axis=0)
    conv.out_channels = len(index)


def scale_rows(linear: nn.Linear, rows: slice, factor: float) -> None:
    """Multiply some output rows (and their bias) by ``factor``, in place."""
    with torch.no_grad():
        linear.weight[rows] *= factor
        if linear.bias is not None:
            linear.bias[rows] *= factor


def first(n: int) -> torch.Tensor:
    return torch.arange(n)
