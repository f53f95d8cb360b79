"""The ``dimap`` pass: data-free module-aware pruning (``vitopt.pruning.dimap``), then an optional KD
fine-tune that runs only when images were given.

``unstructured`` zeroes weights (the paper): the gain is stored size (Core ML keeps the zeros as sparse
weights), not dense speed. ``structured`` removes whole heads and MLP units through the family adapters'
slicing, for dense speed-ups on every runtime. The pass reads no data to prune: no calibration images,
no labels; ``--data`` only feeds the optional fine-tune.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from vitopt.errors import UnsupportedOptionError
from vitopt.passes import ModelPass, PassContext, PassOptions, PassResult, register_pass
from vitopt.pruning import dimap
from vitopt.pruning.dimap_structured import prune_structured
from vitopt.pruning.finetune import FinetuneOptions, finetune

log = logging.getLogger("vitopt")


class DimapOptions(PassOptions):
    mode: Literal["unstructured", "structured"] = "unstructured"
    sparsity: float | None = Field(None, gt=0, lt=1)  # of every module's weights (unstructured) or units
    params: float | None = Field(None, gt=0, lt=1)  # fraction of the model's (non-zero) parameters to keep
    flops: float | None = Field(None, gt=0, lt=1)  # fraction of the model's FLOPs to keep (structured)
    modules: dict[str, list[str]] = Field(default_factory=lambda: dict(dimap.DEFAULT_MODULES))  # glob patterns
    rank: Literal["cost", "latency", "equal"] = "cost"  # structured, params/flops target: see dimap_structured.py
    # rank: cost: every block keeps at least this fraction of its heads and of its MLP units (removing
    # only the cheapest-per-FLOP units can leave the memory-bound attention untouched: see the README)
    min_keep: float = Field(0.0, ge=0, lt=1)
    min_heads: int = Field(1, ge=1)
    mlp_multiple: int = Field(8, ge=1)  # MLP widths stay multiples of this (vector units like round widths)
    finetune: FinetuneOptions = Field(default_factory=lambda: FinetuneOptions(epochs=0))  # runs with --data

    @model_validator(mode="after")
    def _one_budget(self) -> DimapOptions:
        given = [k for k in ("sparsity", "params", "flops") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one budget: sparsity, params or flops")
        if self.flops is not None and self.mode == "unstructured":
            raise ValueError("a flops budget needs mode: structured (zeroed weights still run as dense FLOPs)")
        return self


@register_pass
class DimapPass(ModelPass):
    name = "dimap"
    Options = DimapOptions

    def run(self, module: nn.Module, *, context: PassContext) -> PassResult:
        if self.options.mode == "structured":
            module, details = prune_structured(module, options=self.options, context=context)
            details["finetune"] = self._finetune(module, context=context)
            return PassResult(module.eval(), details)
        return self._unstructured(module, context=context)

    def _unstructured(self, module: nn.Module, *, context: PassContext) -> PassResult:
        from torch.nn.utils import prune

        layers = dimap.module_layers(module, self.options.modules)
        sparsity = self.options.sparsity or _sparsity_for(module, layers, keep=self.options.params)
        masks = dimap.unstructured_masks(layers, sparsity=sparsity)
        named = dict(module.named_modules())
        for name, mask in masks.items():  # torch's own masking: a fine-tune keeps the zeros at zero
            prune.custom_from_mask(named[name], "weight", mask)
        tuned = self._finetune(module, context=context)
        for name in masks:
            prune.remove(named[name], "weight")
        return PassResult(module.eval(), {"mode": "unstructured", "module_sparsity": round(sparsity, 4),
                                          **_sparsity_report(module, layers), "finetune": tuned})  # fmt: skip

    def _finetune(self, module: nn.Module, *, context: PassContext) -> dict:
        epochs = self.options.finetune.epochs
        if epochs == 0:
            return {"ran": False, "why": "finetune.epochs is 0"}
        if context.data is None:
            log.info("dimap: no --data given, so no fine-tune (pruning itself needs none)")
            return {"ran": False, "why": "no --data given"}
        work = context.work_dir / f"dimap-{context.extras.get('pass_index', 0)}"
        summary = finetune(module, context=context, options=self.options.finetune, out_dir=work, epochs=epochs)
        return {"ran": True, "epochs": epochs, "last_epoch": summary.get("last", {})}


def _sparsity_for(module: nn.Module, layers, *, keep: float) -> float:
    """The equal per-module sparsity that leaves ``keep`` of the model's parameters non-zero."""
    total, prunable = sum(p.numel() for p in module.parameters()), dimap.prunable_params(layers)
    sparsity = (1 - keep) * total / prunable
    if not 0 < sparsity < 1:
        raise UnsupportedOptionError(f"params: {keep} is out of DIMAP's reach: its modules hold "
                                     f"{prunable / total:.0%} of the parameters",
                                     hint=f"keep more than {1 - prunable / total:.2f} of the parameters")  # fmt: skip
    return sparsity


def _sparsity_report(module: nn.Module, layers) -> dict:
    zeros = {m: sum(int((layer.weight == 0).sum()) for _, layer in members) for m, members in layers.items()}
    sizes = {m: sum(layer.weight.numel() for _, layer in members) for m, members in layers.items()}
    total = sum(p.numel() for p in module.parameters())
    per_layer = {name: round(float((layer.weight == 0).float().mean()), 4)
                 for members in layers.values() for name, layer in members}  # fmt: skip
    return {"sparsity_by_module": {m: round(zeros[m] / sizes[m], 4) for m in layers},
            "nonzero_params": total - sum(zeros.values()), "params": total,
            "sparsity_by_layer": per_layer}  # fmt: skip
