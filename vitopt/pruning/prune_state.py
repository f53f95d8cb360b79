"""Checkpoints of a pruning run: after every slicing and every fine-tune, atomically, so
``vitopt compress ... --resume`` continues where a Ctrl-C or a kill stopped it, and ends with the
same model an uninterrupted run gives (every random draw is seeded by the step)."""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitopt.errors import CheckpointError
from vitopt.pruning.widths import Widths

STATE_FORMAT = "vitopt.prune-state/1"
STATE_FILE = "prune-state.pt"


@dataclass
class PruneProgress:
    """Where a run is: ``step`` steps fully done; ``sliced`` when step ``step`` is sliced but not
    fine-tuned yet; ``final`` once the final fine-tune is done."""

    step: int = 0
    sliced: bool = False
    final: bool = False
    ema: dict[str, torch.Tensor] | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    extra_steps: int = 0  # steps added because the measured latency missed the budget
    measurements: list[dict[str, Any]] = field(default_factory=list)


def save(work: Path, *, module: nn.Module, widths: Widths, progress: PruneProgress, options: dict) -> None:
    state = {"format": STATE_FORMAT, "options": options, "widths": widths.to_dict(), "model": module.state_dict(),
             "step": progress.step, "sliced": progress.sliced, "final": progress.final, "ema": progress.ema,
             "log": progress.log, "extra_steps": progress.extra_steps,
             "measurements": progress.measurements}  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f".{STATE_FILE}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, work / STATE_FILE)


def load(work: Path, *, original: nn.Module, family, options: dict) -> tuple[nn.Module, PruneProgress] | None:
    """The module and progress saved in ``work``, or None when nothing was saved there."""
    path = work / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise CheckpointError(f"pruning checkpoint {str(path)!r} is unreadable: {err}",
                              hint="drop --resume to start the pruning again") from err  # fmt: skip
    if state.get("format") != STATE_FORMAT or state.get("options") != options:
        raise CheckpointError(f"{str(work)!r} holds a pruning run with other options",
                              hint="run with the same recipe, or drop --resume to start again")  # fmt: skip
    module = rebuild(original, family=family, widths=Widths.from_dict(state["widths"]), state=state["model"])
    progress = PruneProgress(step=state["step"], sliced=state["sliced"], final=state["final"], ema=state["ema"],
                             log=state["log"], extra_steps=state["extra_steps"],
                             measurements=state["measurements"])  # fmt: skip
    return module, progress


def rebuild(original: nn.Module, *, family, widths: Widths, state: dict[str, torch.Tensor]) -> nn.Module:
    """``original``'s architecture sliced to ``widths``, holding ``state``."""
    module = family.slice_model(copy.deepcopy(original), family.keep_first(widths))
    module.load_state_dict(state)
    return module.eval()


def discard(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
