"""What verification and benchmarking need from a runtime: load once, run a batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Runner(ABC):
    """Executes one artifact on one runtime with a fixed number of threads."""

    runtime: str

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.threads = threads

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this runtime cannot execute anything on this machine (None: it can)."""
        return None

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits [N, classes] for a float32 batch [N, C, H, W]."""

    @abstractmethod
    def input_shape(self) -> list:
        """The artifact's input shape; a dynamic dimension is a name or None."""

    def spec(self):
        """The ModelSpec stored in the artifact by vitopt's exporter, or None."""
        return None

    def run_in_chunks(self, batch: np.ndarray, *, chunk: int = 16) -> np.ndarray:
        """Run a batch of any size; an artifact with a fixed batch gets exactly that many
        images per call (the last chunk padded by repeating its final image)."""
        fixed = self.input_shape()[0]
        if not isinstance(fixed, int) or fixed <= 0:
            return np.concatenate([self.run(batch[i : i + chunk]) for i in range(0, len(batch), chunk)])
        outputs = [self.run(_pad(batch[i : i + fixed], fixed))[: len(batch[i : i + fixed])]
                   for i in range(0, len(batch), fixed)]  # fmt: skip
        return np.concatenate(outputs)


def _pad(batch: np.ndarray, size: int) -> np.ndarray:
    missing = size - len(batch)
    return batch if missing == 0 else np.concatenate([batch, np.repeat(batch[-1:], missing, axis=0)])
