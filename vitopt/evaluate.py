"""Accuracy on labelled images (and agreement with a reference model) for a PyTorch model or an
exported artifact run on its own runtime: what ``vitopt eval`` and ``compress --eval-data`` use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from vitopt.data import labelled_dataset
from vitopt.errors import UnsupportedOptionError
from vitopt.spec import ModelSpec

Predict = Callable[[torch.Tensor], np.ndarray]


@dataclass
class Predictor:
    predict: Predict
    spec: ModelSpec
    description: str


def torch_predict(module: torch.nn.Module) -> Predict:
    def predict(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(batch).float().numpy()

    return predict


def runner_predict(runner) -> Predict:
    return lambda batch: runner.run(batch.numpy())


def predictor_for(*, name: str, threads: int | None = None, spec_overrides: dict | None = None,
                  **load_options: Any) -> Predictor:  # fmt: skip
    """A model name (loaded into PyTorch) or an artifact path (run on its runtime)."""
    from vitopt.formats import format_for_path

    fmt = format_for_path(Path(name)) if Path(name).exists() else None  # a .mlpackage is a directory
    if fmt is None:
        from vitopt.models import load_model

        model = load_model(name=name, spec_overrides=spec_overrides, **load_options)
        return Predictor(torch_predict(model.module), model.spec, f"{name} (PyTorch)")
    from vitopt.run_files import check_against_report

    check_against_report(Path(name))
    runner = fmt.open_runner(Path(name), threads=threads)
    spec = runner.spec()
    if spec is None:
        raise UnsupportedOptionError(f"{name!r} carries no vitopt input spec",
                                     hint="export it with vitopt, or evaluate the PyTorch model")  # fmt: skip
    return Predictor(runner_predict(runner), spec.with_overrides(**(spec_overrides or {})), f"{name} ({fmt.runtime})")


def evaluation_loader(*, path: Path, spec: ModelSpec, limit: int | None, batch_size: int = 32):
    dataset = labelled_dataset(path=path, spec=spec)
    if limit is not None and limit < len(dataset):
        step = len(dataset) / limit  # evenly spaced, so every class is represented
        dataset = Subset(dataset, [int(i * step) for i in range(limit)])
    return DataLoader(dataset, batch_size=batch_size, num_workers=0)


def accuracy(*, predict: Predict, loader, reference: Predict | None = None) -> dict[str, float | int]:
    """top1 (and top5 where there are more than 5 classes) as fractions; with a reference
    predictor also its top-1 agreement and the mean KL(reference || model)."""
    sums = np.zeros(5)  # hits1, hits5, n, agree, kl_sum
    classes = 0
    for images, targets in loader:
        logits = predict(images)
        classes = logits.shape[1]
        sums += _batch_sums(logits, targets.numpy(), None if reference is None else reference(images))
    hits1, hits5, n, agree, kl = sums
    result: dict[str, float | int] = {"top1": hits1 / max(n, 1), "n_images": int(n)}
    if classes > 5:
        result["top5"] = hits5 / max(n, 1)
    if reference is not None:
        result.update(agreement=agree / max(n, 1), mean_kl=kl / max(n, 1))
    return result


def _batch_sums(logits: np.ndarray, targets: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    ranked = np.argsort(-logits, axis=1)
    out = np.array([(ranked[:, 0] == targets).sum(), (ranked[:, :5] == targets[:, None]).any(1).sum(),
                    len(targets), 0.0, 0.0])  # fmt: skip
    if ref is not None:
        out[3] = (ref.argmax(1) == ranked[:, 0]).sum()
        out[4] = _kl_rows(ref, logits).sum()
    return out


def _kl_rows(reference: np.ndarray, logits: np.ndarray) -> np.ndarray:
    log_p = _log_softmax(reference.astype(np.float64))
    log_q = _log_softmax(logits.astype(np.float64))
    return (np.exp(log_p) * (log_p - log_q)).sum(1)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def evaluate(*, predictor: Predictor, data: Path, limit: int | None = None,
             reference: Predictor | None = None) -> dict[str, float | int]:  # fmt: skip
    if reference is not None and _contract(reference.spec) != _contract(predictor.spec):
        raise UnsupportedOptionError(
            f"{reference.description} expects {_contract(reference.spec)}, the model {_contract(predictor.spec)}",
            hint="compare models that take the same input size and normalisation",
        )
    loader = evaluation_loader(path=data, spec=predictor.spec, limit=limit)
    return accuracy(predict=predictor.predict, loader=loader, reference=reference and reference.predict)


def _contract(spec: ModelSpec) -> tuple:
    return spec.input_size, tuple(round(v, 4) for v in spec.mean), tuple(round(v, 4) for v in spec.std)
