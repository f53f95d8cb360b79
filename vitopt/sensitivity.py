"""Which layers int8 hurts: quantise one layer group at a time and rank the groups by what it costs.

Each group (the patch embedding, each block, the head; or, ``by="kinds"``, every block's qkv, its
attention projection, its MLP layers, ...) is quantised alone with NNCF on OpenVINO, with the ViT
op groups kept in float as ``precision: auto`` does; every other node is left in float by an
ignored-scope rule. The cost is the loss of top-1 agreement with the float model on real images
and, with labelled images, the loss of top-1 accuracy. A recipe can then keep the worst groups in
float with ``quantize.keep_float_modules``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from vitopt.backends.exporter import ExportedArtifact
from vitopt.data import load_batch
from vitopt.evaluate import accuracy, evaluation_loader, runner_predict
from vitopt.formats import FORMATS
from vitopt.models import LoadedModel
from vitopt.recipe import QuantizeSettings


def layer_groups(module: nn.Module, *, by: str = "blocks") -> dict[str, str]:
    """Group name -> a regex over module paths. ``blocks``: top-level children, with sequences
    (``blocks``, ``stages``) split per element; ``kinds``: weight layers with block indices wildcarded."""
    if by == "kinds":
        names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        kinds = dict.fromkeys(re.sub(r"\.\d+\.", ".*.", n) for n in names)
        return {kind: re.escape(kind).replace(r"\.\*\.", r"\.\d+\.") for kind in kinds}
    groups = {}
    for name, child in module.named_children():
        if not any(p.numel() for p in child.parameters()):
            continue
        sequence = isinstance(child, nn.Sequential | nn.ModuleList)
        members = [f"{name}.{i}" for i, _ in child.named_children()] if sequence else [name]
        groups |= {m: re.escape(m) for m in members}
    return groups


def quant_sensitivity(*, model: LoadedModel, data: str | Path | None = None, eval_data: str | Path | None = None,
                      eval_limit: int | None = None, n_images: int = 128, by: str = "blocks",
                      threads: int | None = None, progress=None) -> dict[str, Any]:  # fmt: skip
    """One row per layer group, worst first: top-1 agreement (and accuracy) with only that group in int8."""
    fmt = FORMATS.get("openvino")
    fmt.check_installed()
    images = load_batch(spec=model.spec, path=data, n=n_images)
    loader = evaluation_loader(path=Path(eval_data), spec=model.spec, limit=eval_limit) if eval_data else None
    with tempfile.TemporaryDirectory(prefix="vitopt-sensitivity-") as tmp:
        float_ir = _export_float(model, images=images, staging=Path(tmp))
        runner = fmt.runner_class()(float_ir.main, threads=threads)
        logits = runner.run_in_chunks(images.numpy())
        base = _score(runner, images=images, reference=logits, loader=loader)
        rows = []
        for name, pattern in layer_groups(model.module, by=by).items():
            if progress:
                progress(name)
            path = _quantise_only(float_ir, pattern=pattern, images=images, dest=Path(tmp) / f"{len(rows)}.xml")
            score = _score(fmt.runner_class()(path, threads=threads), images=images, reference=logits, loader=loader)
            if "top1" in score:
                score["accuracy_drop"] = round(base["top1"] - score["top1"], 6)
            rows.append({"group": name, **score})
    rows.sort(key=lambda r: (r.get("accuracy_drop", 0), -r["top1_agreement"]), reverse=True)
    return {"model": model.spec.name, "by": by, "n_images": len(images), "float": base, "groups": rows}


def _export_float(model: LoadedModel, *, images, staging: Path) -> ExportedArtifact:
    fmt = FORMATS.get("openvino")
    exporter = fmt.exporter_class()(fmt=fmt, precision="fp32", options={})
    return exporter.export(model.module.eval(), spec=model.spec, staging=staging, calibration=images)


def _quantise_only(artifact: ExportedArtifact, *, pattern: str, images, dest: Path) -> Path:
    """int8 for the nodes of one group; an ignored-scope rule keeps every other node in float."""
    from vitopt.backends.openvino.quantize import OpenVinoQuantizer

    quantizer = OpenVinoQuantizer(settings=QuantizeSettings(), only=pattern)
    return quantizer.quantize(artifact, scheme="int8", calibration=images, dest=dest).main


def _score(runner, *, images, reference: np.ndarray, loader) -> dict[str, Any]:
    logits = runner.run_in_chunks(images.numpy())
    score = {"top1_agreement": float(np.mean(logits.argmax(1) == reference.argmax(1)))}
    if loader is not None:
        score["top1"] = accuracy(predict=runner_predict(runner), loader=loader)["top1"]
    return score

