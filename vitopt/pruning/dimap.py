"""DIMAP's data-free, module-aware importance (He et al.), unstructured and structured.

Within one layer, weights sorted by magnitude, descending: Imp(w_(j)) = w_(j)^2 / sum_{i<=j} w_(i)^2. The
largest weight of every layer scores 1, so no layer is emptied, and scores of different layers of one
*module* (every attn.qkv, every attn.proj, every MLP linear) are comparable: one threshold per module.
Patch embedding, patch merging, norms and the classifier are never pruned.

Budget rule (the paper leaves it open): every module gets the same sparsity. A target for the whole model
(parameters, or FLOPs in structured mode) is met by searching that one sparsity, since what is never
pruned makes the model's fraction differ from the modules'.

Structured mode scores a unit (a head: its q/k/v rows and proj columns, and its position-bias weights; an
MLP unit: its fc1 row and fc2 column) by the sum of its weights' Imp, each weight scored within its own
layer; heads compete with heads and MLP units with MLP units, across all blocks. Not the mean per weight:
mean Imp falls like ln(n)/n in a layer of n weights, so a mean strips the late stages for their size.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator

import torch
from torch import nn

from vitopt.errors import UnsupportedOptionError

DEFAULT_MODULES = {"qkv": ["*attn.qkv"], "proj": ["*attn.proj"], "mlp": ["*mlp.fc1", "*mlp.fc2"]}
NEVER_PRUNED = ("patch_embed", "downsample", "head", "norm")  # name parts: patch merging is `downsample`


def importance(weight: torch.Tensor) -> torch.Tensor:
    """Imp of every weight of one layer, same shape."""
    squared = weight.detach().float().pow(2).flatten()
    order = squared.argsort(descending=True)
    ranked = squared[order]
    scores = torch.empty_like(squared)
    scores[order] = ranked / ranked.cumsum(0).clamp_min(torch.finfo(torch.float32).tiny)
    return scores.view_as(weight)


def module_layers(model: nn.Module, modules: dict[str, list[str]]) -> dict[str, list[tuple[str, nn.Linear]]]:
    """The linear layers each module's glob patterns match (never a protected layer); refuses an empty module."""
    found: dict[str, list[tuple[str, nn.Linear]]] = {}
    for module, patterns in modules.items():
        found[module] = [(n, m) for n, m in _linears(model) if any(fnmatch.fnmatch(n, p) for p in patterns)]
        if not found[module]:
            raise UnsupportedOptionError(f"DIMAP module {module!r} matches no linear layer ({', '.join(patterns)})",
                                         hint="set the pass's `modules:` to globs of your layer names")  # fmt: skip
    return found


def _linears(model: nn.Module) -> Iterator[tuple[str, nn.Linear]]:
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear) and not any(part in NEVER_PRUNED for part in name.split(".")):
            yield name, layer


@torch.no_grad()
def unstructured_masks(layers: dict[str, list[tuple[str, nn.Linear]]], *, sparsity: float) -> dict[str, torch.Tensor]:
    """Per layer name, the mask keeping what survives one threshold per module at ``sparsity``."""
    masks: dict[str, torch.Tensor] = {}
    for members in layers.values():
        scores = [importance(layer.weight) for _, layer in members]
        flat = torch.cat([s.flatten() for s in scores])
        removed = int(sparsity * flat.numel())
        threshold = flat.kthvalue(removed).values if removed > 0 else flat.min() - 1
        masks |= {name: (s > threshold) for (name, _), s in zip(members, scores, strict=True)}
    return masks


def prunable_params(layers: dict[str, list[tuple[str, nn.Linear]]]) -> int:
    return sum(layer.weight.numel() for members in layers.values() for _, layer in members)


def unit_scores(model: nn.Module, family) -> dict[tuple[str, int], torch.Tensor]:
    """Summed Imp per head and MLP unit of every block (structured mode)."""
    return {key: sums for key, sums in family.unit_sums(model, _importance_of).items() if key[0] in ("heads", "mlp")}


def _importance_of(tensor: torch.Tensor) -> torch.Tensor:
    return importance(tensor) if tensor.numel() > 1 else torch.ones_like(tensor)


def structured_keep(scores: dict[tuple[str, int], torch.Tensor], *, fraction: float, min_units: dict[str, int],
                    multiple: dict[str, int]) -> dict[tuple[str, int], torch.Tensor]:  # fmt: skip
    """Kept indices per (dimension, block): in each dimension the ``fraction`` of units with the lowest score
    goes, across blocks, each block keeping at least ``min_units`` and a multiple of ``multiple``."""
    keep = {}
    for dim in ("heads", "mlp"):
        keys = [k for k in scores if k[0] == dim]
        flat = torch.cat([scores[k] for k in keys])
        removed = int(fraction * flat.numel())
        threshold = flat.kthvalue(removed).values if removed > 0 else flat.min() - 1
        for key in keys:
            keep[key] = _kept(scores[key], threshold, floor=min_units[dim], multiple=multiple[dim])
    return keep


def _kept(score: torch.Tensor, threshold: torch.Tensor, *, floor: int, multiple: int) -> torch.Tensor:
    """The units above the threshold, rounded up to the multiple (never below the floor), best first kept."""
    wanted = int((score > threshold).sum())
    n = min(len(score), max(floor, -(-wanted // multiple) * multiple))
    return score.argsort(descending=True)[:n].sort().values
