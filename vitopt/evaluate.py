"""Accuracy on labelled images, for a PyTorch module or any runtime runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from vitopt.data import labelled_dataset
from vitopt.spec import ModelSpec

Predict = Callable[[torch.Tensor], np.ndarray]


def torch_predict(module: torch.nn.Module) -> Predict:
    def predict(batch: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(batch).numpy()

    return predict


def runner_predict(runner) -> Predict:
    return lambda batch: runner.run(batch.numpy())


def evaluation_loader(*, path: Path, spec: ModelSpec, limit: int | None, batch_size: int = 32):
    dataset = labelled_dataset(path=path, spec=spec)
    if limit is not None and limit < len(dataset):
        step = len(dataset) / limit  # evenly spaced, so every class is represented
        dataset = Subset(dataset, [int(i * step) for i in range(limit)])
    return DataLoader(dataset, batch_size=batch_size, num_workers=0)


def accuracy(*, predict: Predict, loader) -> dict[str, float | int]:
    """top1 (and top5 where there are more than 5 classes) as fractions."""
    hits1 = hits5 = total = 0
    for images, targets in loader:
        logits = predict(images)
        ranked = np.argsort(-logits, axis=1)
        t = targets.numpy()
        hits1 += int((ranked[:, 0] == t).sum())
        hits5 += int((ranked[:, :5] == t[:, None]).any(1).sum())
        total += len(t)
    result: dict[str, float | int] = {"top1": hits1 / max(total, 1), "n_images": total}
    if logits.shape[1] > 5:
        result["top5"] = hits5 / max(total, 1)
    return result
