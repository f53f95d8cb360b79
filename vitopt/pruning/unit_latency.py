"""DIMAP's ``rank: latency``: what one head and one MLP unit of each stage cost in milliseconds, measured
on the target's runtime, to rank units by importance per millisecond saved instead of per FLOP.

Why: FLOPs price a Swin head by its matmuls, but on a CPU runtime much of a window attention's time is
memory-bound (softmax over windows, the position bias, window partition), and a stage-1 MLP's skinny
GEMMs run further from peak than a stage-4 one's; ranked by FLOPs, a 50%-FLOPs Swin-T was 1.36x on ONNX
Runtime (README, DIMAP). Per stage, one block is exported three times by the target's own exporter (as
is, half its heads, half its MLP units), the three are timed interleaved by its runner, and each unit's
cost is the saving divided by the units removed (latency is close to linear in heads and MLP width over
that range). The pruning budget itself stays what the recipe says (FLOPs or params). Probes read random
tensors, never data; results are cached per machine, runtime and block shape like NViT's table.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from vitopt.bench import BenchSettings, measure_interleaved
from vitopt.formats import FORMATS
from vitopt.pruning.latency import cache_key, cache_path
from vitopt.pruning.latency_measure import _check_runs_here, _export
from vitopt.spec import ModelSpec

log = logging.getLogger("vitopt")
PROBE_BENCH = dict(warmup=3, min_runs=30, min_time_s=1.0, max_time_s=10.0)
NOISE_FLOOR = 0.01  # a unit whose measured saving is below this share of its block's time per unit costs this


class _Probe(nn.Module):
    """One block reading [B, 1, N, C] (an image-shaped input every exporter and runner takes)."""

    def __init__(self, block: nn.Module, layout: tuple[int, ...]) -> None:
        super().__init__()
        self.block, self.layout = block, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x.reshape(x.shape[0], *self.layout, x.shape[-1]))
        return out.flatten(1, -2).mean(dim=1)


def unit_costs_ms(model: nn.Module, *, family, target, threads: int, progress=None) -> dict[tuple[str, int], float]:
    """Milliseconds one unit ("heads" or "mlp") of each block saves on ``target``'s runtime."""
    _check_runs_here(target)
    key = cache_key(target=target, signature={"probe": "dimap-units", **family.signature_for_units(model)},
                    levels={}, threads=threads, full=family.read_widths(model))  # fmt: skip
    path = cache_path(key).with_name(f"dimap-units-{cache_path(key).name}")
    cached = _load(path, key)
    if cached is None:
        cached = _measure(model, family=family, target=target, threads=threads, progress=progress)
        _save(path, key, cached)
    return {(dim, i): cached[dim][s] for s, blocks in enumerate(family.stages(model)) for i in blocks
            for dim in ("heads", "mlp")}  # fmt: skip


def _measure(model, *, family, target, threads, progress) -> dict[str, list[float]]:
    stages, widths = family.stages(model), family.read_widths(model)
    costs = {"heads": [], "mlp": []}
    with progress(f"unit latency on {target.format} ({len(stages)} stages)", len(stages)) if progress \
            else nullcontext() as tick:  # fmt: skip
        for blocks in stages:
            w = widths.blocks[blocks[0]]
            saved = _stage_savings(model, family, blocks[0], w, target=target, threads=threads)
            floor = NOISE_FLOOR * saved["full"] / (w.heads + w.mlp)
            costs["heads"].append(max(saved["heads"] / (w.heads - w.heads // 2), floor))
            costs["mlp"].append(max(saved["mlp"] / (w.mlp - w.mlp // 2), floor))
            (tick or (lambda: None))()
    log.info("dimap unit latency (ms per head, per MLP unit, by stage): %s", costs)
    return costs


def _stage_savings(model, family, index: int, w, *, target, threads: int) -> dict[str, float]:
    """p50 of block ``index`` (widths ``w``), and what halving its heads and its MLP units saves (ms)."""
    halves = {"full": {}, "heads": {"heads": torch.arange(w.heads // 2)}, "mlp": {"mlp": torch.arange(w.mlp // 2)}}
    fmt = FORMATS.get(target.format)
    with tempfile.TemporaryDirectory(prefix="vitopt-units-") as tmp:
        runners = {}
        for name, cut in halves.items():
            block, layout = family.probe_block(model, index)
            family.slice_block(block, {"heads": torch.arange(w.heads), "mlp": torch.arange(w.mlp), **cut})
            emb = block.attn.qkv.in_features
            spec = ModelSpec(name="dimap-probe", input_size=(1, int(torch.tensor(layout).prod()), emb), mean=(0.0,),
                             std=(1.0,), num_classes=emb)  # fmt: skip
            runners[name] = fmt.open_runner(_export(_Probe(block, layout), target=target, spec=spec,
                                                    dest=Path(tmp) / name), threads=threads)  # fmt: skip
        x = torch.randn(spec.batch_shape(1)).numpy()
        stats = measure_interleaved({k: functools.partial(r.run, x) for k, r in runners.items()},
                                    settings=BenchSettings(threads=threads, **PROBE_BENCH))  # fmt: skip
        del runners
    full = stats["full"].p50
    return {"full": full, "heads": full - stats["heads"].p50, "mlp": full - stats["mlp"].p50}


def _load(path: Path, key: dict) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data["costs"] if data.get("key") == json.loads(json.dumps(key, default=str)) else None


def _save(path: Path, key: dict, costs: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "costs": costs}, indent=1, default=str))
    tmp.replace(path)
