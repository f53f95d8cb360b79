"""Training checkpoints: atomic, weights_only-loadable, enough to resume at the exact step.

No RNG state is stored: every step reseeds from (seed, epoch, step, rank), so the position
(epoch, step) plus model, optimizer and scheduler states determine the rest of the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vitopt.errors import CheckpointError

STATE_FORMAT = "vitopt.train-state/1"
STATE_FILE = "checkpoint.pt"


def save_state(path: Path, *, model, optimizer, scheduler, epoch: int, step: int, config: dict,
               extra: dict[str, Any]) -> None:  # fmt: skip
    """Write to a temp file and rename: a kill mid-write leaves the previous checkpoint intact."""
    state = {
        "format": STATE_FORMAT, "epoch": epoch, "step": step, "config": config,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), **extra,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no training checkpoint at {str(path)!r} to resume from",
                              hint="drop --resume to start a new run")  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"training checkpoint {str(path)!r} is unreadable: {err}") from err
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a vitopt training checkpoint")
    return state


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """A distinct, reproducible seed per (run, epoch, step, rank)."""
    return (seed * 1_000_003 + epoch * 100_003 + step * 101 + rank) % (2**63 - 1)
