"""``reparameterize``: fold a model, prove it computes the same function, say what is left and why."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from vitopt.errors import InputError, VerificationError
from vitopt.reparam import precision
from vitopt.reparam.engine import Engine, Record
from vitopt.reparam.kinds import ALL_KINDS
from vitopt.reparam.known_blocks import NativeFolder, NativeRecord
from vitopt.reparam.verify import Equivalence, compare, first_divergence, outputs

STRATEGIES = ("auto", "generic", "native")
MAX_LISTED = 50  # entries per list in the report; totals are always given


@dataclass
class ReparamResult:
    module: nn.Module
    details: dict


def count_batch_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def reparameterize(module: nn.Module, *, images: torch.Tensor, strategy: str = "auto",
                   include_kinds: Iterable[str] = ALL_KINDS, rtol: float = 1e-4,
                   atol: float = 1e-4) -> ReparamResult:  # fmt: skip
    """Fold every foldable structure of ``module`` (never modified: a copy is folded).

    ``images`` is a batch of real preprocessed images: the outputs before and after must agree
    within ``rtol``/``atol`` (``torch.allclose``), or the difference must be proven to be rounding that
    the model itself amplifies (:mod:`precision`: the folds checked in float64), or
    :class:`VerificationError` is raised, naming the first module whose output changed.
    ``strategy``: ``generic`` folds from the traced graph only; ``native`` only calls blocks' own fold
    methods (as timm's ``reparameterize_model``); ``auto`` uses native methods for blocks fx cannot
    trace, then the generic fold.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown reparam strategy {strategy!r}", hint=f"one of {', '.join(STRATEGIES)}")
    kinds = frozenset(include_kinds)
    work = copy.deepcopy(module)
    if work.training:
        return ReparamResult(work, _refused_details(work, strategy, kinds))
    reference = outputs(work, images)
    work, record, native = _fold(work, images[:2], strategy=strategy, kinds=kinds, rtol=rtol, atol=atol)

    def refold(model: nn.Module, sample: torch.Tensor) -> nn.Module:  # the same folds on a float64 copy
        return _fold(model, sample, strategy=strategy, kinds=kinds, rtol=rtol, atol=atol)[0]

    check, proof = _check(module, work, images, reference, refold=refold, rtol=rtol, atol=atol)
    if proof is not None and not proof.passed:
        raise _verification_error(module, work, images, check, record, native, proof)
    return ReparamResult(work, details(module, work, strategy, kinds, record, native, check, proof))


def _fold(model: nn.Module, sample: torch.Tensor, *, strategy: str, kinds: frozenset[str], rtol: float,
          atol: float) -> tuple[nn.Module, Record, NativeRecord]:  # fmt: skip
    engine = Engine(model, sample=sample, kinds=kinds) if strategy != "native" else None
    native = NativeRecord()
    if strategy != "generic":
        untraceable = set(engine.untraceable()) if engine is not None else None
        select = (lambda path, _m: True) if untraceable is None else (lambda path, _m: path in untraceable)
        folder = NativeFolder(select=select, rtol=rtol, atol=atol)
        model, native = folder.run(model, sample), folder.record
        if engine is not None and native.applied:
            engine = Engine(model, sample=sample, kinds=kinds)  # shapes and calls changed with the native folds
    if engine is None:
        return model, Record(), native
    return engine.run(), engine.record, native


def _check(original: nn.Module, folded: nn.Module, images: torch.Tensor, reference: list[torch.Tensor], *, refold,
           rtol: float, atol: float) -> tuple[Equivalence, precision.Float64Proof | None]:  # fmt: skip
    """The fp32 check and, where it fails, the float64 proof: a right fold rounds differently, and a model that
    amplifies rounding (an untrained visformer) turns that alone into more than the tolerance."""
    check = compare(reference, outputs(folded, images), rtol=rtol, atol=atol, n_images=len(images))
    if check.passed:
        return check, None
    return check, precision.prove(original, folded, images, fold=refold, rtol=rtol, atol=atol)


def _verification_error(original, folded, images, check: Equivalence, record: Record, native,
                        proof: precision.Float64Proof) -> VerificationError:  # fmt: skip
    skip = record.edited | record.bypassed | set(native.applied)
    where = first_divergence(original, folded, images[:2], rtol=check.rtol, atol=check.atol, skip=skip)
    at = f"; first differing module: {where}" if where else ""
    return VerificationError(
        f"reparam changed the model's outputs: max abs diff {check.max_abs_diff:.3g} on {check.n_images} images "
        f"(rtol {check.rtol:g}, atol {check.atol:g}){at}; not rounding: {proof.why_not}",
        hint="report this model; run the pass with include_kinds narrowed to find the fold at fault",
    )


def _refused_details(module: nn.Module, strategy: str, kinds: frozenset[str]) -> dict:
    n = count_batch_norms(module)
    return {
        "strategy": strategy, "include_kinds": sorted(kinds), "folds": {}, "native": {},
        "batchnorm": {"before": n, "after": n, "folded": 0},
        "refused": "the model is in training mode: BatchNorm normalises with batch statistics, so nothing folds "
                   "(call .eval() first)",
    }  # fmt: skip


def _left(folded: nn.Module, record: Record, native: NativeRecord, strategy: str) -> list[dict]:
    left = []
    for path, module in folded.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            why = record.left.get(path) or _why(path, record, strategy)
            left.append({"module": path, "kind": "batchnorm", "reason": why})
    left += [{"module": m, "kind": kind, "reason": r} for (m, r), kind in record.refusals.items()]
    left += [{"module": m, "kind": "native", "reason": r} for m, r in native.refused.items()]
    return left


def _why(path: str, record: Record, strategy: str) -> str:
    if strategy == "native":
        return "strategy 'native': no block's own fold method covers it (the generic fold would)"
    for outer, error in record.untraceable.items():
        if outer == "(model)" or path.startswith(f"{outer}."):
            return f"inside {outer}, which torch.fx cannot trace ({error})"
    for region, error in record.unshaped.items():
        if region == "(model)" or path.startswith(f"{region}."):
            return f"inside {region}, whose shapes could not be propagated with fake tensors ({error})"
    for region, error in record.errors.items():
        if region == "(model)" or path.startswith(f"{region}."):
            return f"inside {region}, where the analysis failed ({error}): please report it"
    return "not reached by the analysis (the module did not run on the calibration batch)"


def details(original: nn.Module, folded: nn.Module, strategy: str, kinds: frozenset[str], record: Record,
            native: NativeRecord, check: Equivalence, proof: precision.Float64Proof | None = None) -> dict:  # fmt: skip
    """The pass's entry in the report: folds per kind, what is left and why, and the equivalence check."""
    before, after = count_batch_norms(original), count_batch_norms(folded)
    left = _left(folded, record, native, strategy)
    return {
        "strategy": strategy,
        "include_kinds": sorted(kinds),
        "folds": dict(sorted(record.folds.items())),
        "native": dict(sorted(Counter(native.applied.values()).items())),
        "batchnorm": {"before": before, "after": after, "folded": before - after},
        "merged_branches": record.merges[:MAX_LISTED],
        "left": left[:MAX_LISTED],
        "left_total": len(left),
        "untraceable": dict(list(record.untraceable.items())[:MAX_LISTED]),
        "graph_rewrites": record.graph_rewrites,
        "unshaped": record.unshaped,
        "analysis_errors": record.errors,
        "verification": _verification(check, proof),
    }


def _verification(check: Equivalence, proof: precision.Float64Proof | None) -> dict:
    """The fp32 check; for a model that amplifies its own rounding beyond the tolerance, the float64 proof that
    passed in its place (``passed`` then says the folds are right, ``max_abs_diff`` what fp32 rounding made of them)."""
    if proof is None:
        return {**check.to_dict(), "precision": "fp32"}
    return {**check.to_dict(), "passed": True, "precision": "float64", "rounding": proof.to_dict()}
