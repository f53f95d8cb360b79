"""When fp32 cannot tell a right fold from a wrong one: prove the folds in float64 instead.

Some models amplify rounding: an untrained visformer's activations grow block after block until its
attention softmax saturates, and then fp32 rounding decides which key wins. Such a model's fp32 outputs
move by more than the tolerance under any change of rounding order (another batch size does it), so a
correct fold, which rounds differently, fails the fp32 check too. When the fp32 check fails, the folds
are checked again in float64, where rounding is 2^29 times finer: the same folds, made on a float64
copy, must reproduce the float64 model within the tolerance; the fp32 result must hold the same
weights; and its fp32 outputs must be about as close to the exact (float64) ones as the unmodified
model's are. A fold that changes the function fails in float64 as it does in fp32.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vitopt.errors import one_line
from vitopt.reparam.verify import Equivalence, compare, outputs

WIDE = torch.float64
WEIGHT_ULPS = 64  # a block's own fold method works in the model's dtype: its fp32 and float64 weights differ a little
# how much more fp32 rounding error (mean abs) the folded model may have than the unmodified one: two roundings
# of one ill-conditioned function land within a small factor (0.1 to 2.4 on untrained visformers); a fold that
# cancels digits (branches that nearly cancel) rounds worse by orders of magnitude
ROUNDING_SLACK = 8.0


@dataclass(frozen=True)
class Float64Proof:
    why_not: str | None  # why the difference is not proven to be rounding (None: it is)
    model_error: float | None = None  # mean abs diff of the unmodified model's fp32 outputs from its float64 ones
    folded_error: float | None = None  # the same for the folded model
    fold: Equivalence | None = None  # the float64 fold against the unmodified float64 model

    @property
    def passed(self) -> bool:
        return self.why_not is None

    def to_dict(self) -> dict:
        return {"model_fp32_error": round(self.model_error, 9), "folded_fp32_error": round(self.folded_error, 9),
                "float64": self.fold.to_dict()}  # fmt: skip


def prove(original: nn.Module, folded: nn.Module, images: torch.Tensor, *,
          fold: Callable[[nn.Module, torch.Tensor], nn.Module], rtol: float, atol: float) -> Float64Proof:  # fmt: skip
    """Whether ``folded`` (``original`` after ``fold``) computes the function ``original`` does, and differs from
    it in fp32 by no more rounding than ``original`` itself makes."""
    try:
        wide_images = images.to(WIDE)
        expected = outputs(copy.deepcopy(original).to(WIDE), wide_images, dtype=WIDE)
        wide_folded = fold(copy.deepcopy(original).to(WIDE), wide_images[:2])
        got = outputs(wide_folded, wide_images, dtype=WIDE)
    except Exception as err:  # an op without a float64 kernel, a forward that casts to fp32 itself, ...
        return Float64Proof(f"the model cannot be checked in float64 ({one_line(err, with_type=True)})")
    check = compare(expected, got, rtol=rtol, atol=atol, n_images=len(images))
    if not check.passed:
        return Float64Proof(f"in float64 the folded model differs too (max abs diff {check.max_abs_diff:.3g})",
                            fold=check)  # fmt: skip
    if not same_model(folded, wide_folded):
        return Float64Proof("the fold of a float64 copy gave another model than the fp32 fold", fold=check)
    model_error, folded_error = _error(original, images, expected), _error(folded, images, expected)
    if folded_error > ROUNDING_SLACK * model_error:
        why = f"the folded model rounds worse ({folded_error:.3g} from the exact outputs, the model {model_error:.3g})"
        return Float64Proof(why, model_error, folded_error, check)
    return Float64Proof(None, model_error, folded_error, check)


def _error(module: nn.Module, images: torch.Tensor, expected: list[torch.Tensor]) -> float:
    """How far ``module``'s outputs (in its own dtype) are from ``expected`` (float64) on average: its rounding
    error (a mean: the max of a chaotic model's error jumps from one rounding to the next)."""
    got = outputs(module, images, dtype=WIDE)
    return float(torch.cat([(a - b).abs().flatten() for a, b in zip(got, expected, strict=True)]).mean())


def same_model(folded: nn.Module, wide: nn.Module) -> bool:
    """Whether ``folded`` is ``wide`` in a narrower dtype: the same modules and the same weights, rounded."""
    kinds = [(p, type(m).__name__) for p, m in folded.named_modules()]
    if kinds != [(p, type(m).__name__) for p, m in wide.named_modules()]:
        return False
    a, b = folded.state_dict(), wide.state_dict()
    return a.keys() == b.keys() and all(_rounded(a[k], b[k]) for k in a)


def _rounded(narrow: torch.Tensor, wide: torch.Tensor) -> bool:
    """Whether ``narrow`` is ``wide`` rounded to its dtype, give or take a block's own fold method rounding."""
    if narrow.shape != wide.shape:
        return False
    if not narrow.is_floating_point():
        return torch.equal(narrow, wide)
    tol = WEIGHT_ULPS * torch.finfo(narrow.dtype).eps
    scale = float(wide.abs().max()) if wide.numel() else 0.0
    return torch.allclose(narrow, wide.to(narrow.dtype), rtol=tol, atol=tol * scale)
