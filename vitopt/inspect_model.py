"""What is inside a model: size, cost, and the block structure passes will act on."""

from __future__ import annotations

from typing import Any

from torch import nn

from vitopt.flops import FLOPS_CONVENTION, count_params, model_cost
from vitopt.models import LoadedModel


def describe_model(model: LoadedModel) -> dict[str, Any]:
    cost = model_cost(model.module, input_size=model.spec.input_size)
    return {
        "name": model.spec.name,
        "weights": model.weights,
        "params": cost.params,
        "flops": cost.flops,
        "flops_convention": FLOPS_CONVENTION,
        "spec": model.spec.to_dict() | {"labels": _label_summary(model.spec.labels)},
        "children": [_child(name, child) for name, child in model.module.named_children()],
        "attention": _attention_layers(model.module),
        "batchnorm_layers": sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.module.modules()),
    }


def _child(name: str, module: nn.Module) -> dict[str, Any]:
    entry = {"name": name, "type": type(module).__name__, "params": count_params(module)}
    if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module):
        kinds = sorted({type(m).__name__ for m in module})
        entry["blocks"] = {"count": len(module), "types": kinds}
    return entry


def _attention_layers(module: nn.Module) -> list[dict[str, Any]]:
    """Modules that carry a head count: what head/QK/V pruning will see."""
    layers = []
    for name, sub in module.named_modules():
        heads = getattr(sub, "num_heads", None)
        if isinstance(heads, int):
            layers.append({"name": name, "type": type(sub).__name__, "num_heads": heads,
                           "head_dim": getattr(sub, "head_dim", None)})  # fmt: skip
    return layers


def _label_summary(labels: tuple[str, ...] | None) -> list[str] | None:
    if labels is None:
        return None
    return list(labels) if len(labels) <= 12 else [*labels[:5], "...", *labels[-2:]]
