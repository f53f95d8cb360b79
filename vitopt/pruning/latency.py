"""NViT's latency lookup table: one block of the model's family measured on the target runtime
over a grid of widths, interpolated, cached per machine.

A block's latency is modelled as attention half (EMB, H, QK, V) plus MLP half (EMB, MLP), each
measured on its own grid as a tiny model exported by the target's own exporter and timed by its own
runner; the model's latency is the sum over blocks plus a constant for everything else (patch
embedding, head), which is the measured whole model minus its predicted blocks. Between grid
points the table interpolates multilinearly (and extrapolates linearly past the edges).

The cache is keyed by what a latency depends on: runtime and version, CPU model and ISA flags,
thread count, the block's shape signature and the grid; any change measures afresh.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitopt.pruning.widths import BlockWidths, Widths

TABLE_VERSION = 2
CACHE_DIR = Path(os.environ.get("VITOPT_CACHE", Path.home() / ".cache" / "vitopt")) / "latency"
ATTN_DIMS, MLP_DIMS = ("emb", "heads", "qk", "v"), ("emb", "mlp")


@dataclass(frozen=True)
class Grid:
    """Measured half-block latencies (ms) at every combination of the levels."""

    levels: dict[str, list[int]]
    attn: np.ndarray  # indexed [emb, heads, qk, v]
    mlp: np.ndarray  # indexed [emb, mlp]
    stem_ms: float  # everything outside the blocks

    def block_ms(self, emb: int, block: BlockWidths) -> float:
        attn = interpolate(self.attn, [self.levels[d] for d in ATTN_DIMS], [emb, block.heads, block.qk, block.v])
        mlp = interpolate(self.mlp, [self.levels[d] for d in MLP_DIMS], [emb, block.mlp])
        return max(attn, 0.0) + max(mlp, 0.0)

    def model_ms(self, widths: Widths) -> float:
        return self.stem_ms + sum(self.block_ms(widths.emb, b) for b in widths.blocks)

    def to_dict(self) -> dict[str, Any]:
        return {"levels": self.levels, "attn": self.attn.tolist(), "mlp": self.mlp.tolist(), "stem_ms": self.stem_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        return cls(levels=data["levels"], attn=np.asarray(data["attn"]), mlp=np.asarray(data["mlp"]),
                   stem_ms=float(data["stem_ms"]))  # fmt: skip


def interpolate(values: np.ndarray, axes: list[list[int]], point: list[int]) -> float:
    """Multilinear interpolation on a grid; linear extrapolation past its edges."""
    corners = []
    for levels, x in zip(axes, point, strict=True):
        if len(levels) == 1:
            corners.append([(0, 1.0)])
            continue
        i = int(np.clip(np.searchsorted(levels, x) - 1, 0, len(levels) - 2))
        t = (x - levels[i]) / (levels[i + 1] - levels[i])
        corners.append([(i, 1 - t), (i + 1, t)])
    return float(sum(values[tuple(i for i, _ in c)] * np.prod([w for _, w in c]) for c in itertools.product(*corners)))


def grid_levels(widths: Widths, *, multiples: dict[str, int], points: int) -> dict[str, list[int]]:
    """``points`` levels per dimension from the smallest width pruning can reach (one multiple) to the
    model's widest, evenly spaced on the multiples. The smallest is measured, not extrapolated: small
    blocks cost a floor of per-operator overhead that a line through the wide levels would miss."""
    full = {"emb": widths.emb, **{d: max(b.get(d) for b in widths.blocks) for d in ("heads", "qk", "v", "mlp")}}
    levels = {}
    for dim, top in full.items():
        m = multiples.get(dim, 1)
        low = min(m, top)
        steps = [low + (top - low) * k / (points - 1) for k in range(points)]
        levels[dim] = sorted({min(top, max(low, round(x / m) * m)) for x in steps})
    return levels


class _Tokens(nn.Module):
    """Wraps a token-mixing half so it takes an image-shaped [B, 1, N, EMB] input: every format's own
    exporter and runner then apply unchanged."""

    def __init__(self, inner: Callable[[torch.Tensor], torch.Tensor] | nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x[:, 0]).mean(dim=1)


class AttentionHalf(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1 = block.norm1, block.attn, block.ls1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ls1(self.attn(self.norm1(x)))


class MlpHalf(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.norm2, self.mlp, self.ls2 = block.norm2, block.mlp, block.ls2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ls2(self.mlp(self.norm2(x)))


def cache_key(*, target, signature: dict, levels: dict, threads: int, full: Widths) -> dict[str, Any]:
    from vitopt.environment import describe_environment
    from vitopt.formats import FORMATS, RUNTIMES

    env = describe_environment(threads=threads)
    runtime = FORMATS.get(target.format).runtime
    return {
        "version": TABLE_VERSION, "format": target.format, "options": target.options, "runtime": runtime,
        "runtime_version": env["packages"].get(RUNTIMES.get(runtime).package), "cpu": env["cpu_model"],
        "isa": sorted(k for k, v in env["isa"].items() if v), "threads": threads, "block": signature,
        "levels": levels, "widths": full.to_dict(),
    }  # fmt: skip


def cache_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return CACHE_DIR / f"{key['format']}-{digest}.json"


def load_cached(key: dict[str, Any]) -> Grid | None:
    path = cache_path(key)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return Grid.from_dict(data["grid"]) if data.get("key") == json.loads(json.dumps(key, default=str)) else None


def save_cached(key: dict[str, Any], grid: Grid) -> Path:
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"key": key, "grid": grid.to_dict()}, indent=1, default=str))
    os.replace(tmp, path)
    return path
