"""Filling the latency table: each grid point exported with the target's exporter, timed with its
runner (the same path the final artifact takes), with a progress bar and ETA; cached on disk."""

from __future__ import annotations

import functools
import itertools
import logging
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vitopt.bench import BenchSettings, measure
from vitopt.errors import UnsupportedOptionError
from vitopt.formats import FORMATS
from vitopt.pruning.latency import (
    ATTN_DIMS,
    MLP_DIMS,
    AttentionHalf,
    Grid,
    MlpHalf,
    _Tokens,
    cache_key,
    grid_levels,
    load_cached,
    save_cached,
)  # fmt: skip
from vitopt.pruning.widths import BlockWidths, Widths
from vitopt.spec import ModelSpec

log = logging.getLogger("vitopt")
PROBE_BENCH = dict(warmup=3, min_runs=20, min_time_s=0.15, max_time_s=5.0)


def latency_table(model: nn.Module, *, family, spec: ModelSpec, target, threads: int, multiples: dict[str, int],
                  points: int, progress=None) -> tuple[Grid, bool]:  # fmt: skip
    """(the table, whether it came from the cache) for ``model`` on ``target``'s runtime."""
    _check_runs_here(target)
    widths = family.read_widths(model)
    levels = grid_levels(widths, multiples=multiples, points=points)
    key = cache_key(target=target, signature=family.signature(model), levels=levels, threads=threads, full=widths)
    cached = load_cached(key)
    if cached is not None:
        return cached, True
    grid = _measure_grid(model, family=family, spec=spec, target=target, threads=threads, levels=levels,
                         widths=widths, progress=progress)  # fmt: skip
    path = save_cached(key, grid)
    log.info("latency table measured and cached at %s", path)
    return grid, False


def _check_runs_here(target) -> None:
    fmt = FORMATS.get(target.format)
    reason = fmt.runner_class().unavailable_reason()
    if reason:
        raise UnsupportedOptionError(
            f"a latency budget is measured on {target.format}'s runtime, which cannot run here: {reason}",
            hint="use a flops or params budget, or put an onnx or openvino target first in the recipe",
        )


def _measure_grid(model, *, family, spec, target, threads, levels, widths: Widths, progress) -> Grid:
    attn_points = list(itertools.product(*(levels[d] for d in ATTN_DIMS)))
    mlp_points = list(itertools.product(*(levels[d] for d in MLP_DIMS)))
    total = len(attn_points) + len(mlp_points) + len(levels["emb"]) + 1
    timer = _ProbeTimer(target=target, threads=threads, tokens=family.tokens(model))
    with progress(f"latency table on {target.format} ({total} probes)", total) if progress else nullcontext() as tick:
        tick = tick or (lambda: None)
        overhead = {e: timer.time(_Tokens(nn.Identity()), emb=e, tick=tick) for e in levels["emb"]}
        attn = [timer.time(_Tokens(AttentionHalf(_block(model, family, p, None))), emb=p[0], tick=tick)
                - overhead[p[0]] for p in attn_points]  # fmt: skip
        mlp = [timer.time(_Tokens(MlpHalf(_block(model, family, None, p))), emb=p[0], tick=tick) - overhead[p[0]]
               for p in mlp_points]  # fmt: skip
        whole = timer.time_model(model, spec=spec, tick=tick)
    shape = lambda dims: [len(levels[d]) for d in dims]  # noqa: E731
    grid = Grid(levels=levels, attn=np.asarray(attn).reshape(shape(ATTN_DIMS)),
                mlp=np.asarray(mlp).reshape(shape(MLP_DIMS)), stem_ms=0.0)  # fmt: skip
    stem = whole - sum(grid.block_ms(widths.emb, b) for b in widths.blocks)
    return Grid(levels=levels, attn=grid.attn, mlp=grid.mlp, stem_ms=max(stem, 0.0))


def _block(model, family, attn_point, mlp_point) -> nn.Module:
    """A block at the grid point; the half not being measured keeps its smallest size."""
    if attn_point is not None:
        emb, heads, qk, v = attn_point
        return family.block_at(model, emb=emb, widths=BlockWidths(heads=heads, qk=qk, v=v, mlp=8))
    emb, mlp = mlp_point
    return family.block_at(model, emb=emb, widths=BlockWidths(heads=1, qk=8, v=8, mlp=mlp))


def _float_precision(target) -> str:
    """Latency is taken on the float export: a quantised target's is its base precision's."""
    return target.precision if target.precision in ("fp32", "fp16") else "fp32"


def _export(module: nn.Module, *, target, spec: ModelSpec, dest: Path) -> Path:
    """``module`` exported by ``target``'s own exporter into ``dest``; the artifact's main file."""
    fmt = FORMATS.get(target.format)
    exporter = fmt.exporter_class()(fmt=fmt, precision=_float_precision(target), options=target.options)
    dest.mkdir(parents=True, exist_ok=True)
    return exporter.export(module.eval(), spec=spec, staging=dest, calibration=torch.zeros(spec.batch_shape(1))).main


class _ProbeTimer:
    def __init__(self, *, target, threads: int, tokens: int) -> None:
        self.fmt, self.target, self.threads, self.tokens = FORMATS.get(target.format), target, threads, tokens

    def time(self, probe: nn.Module, *, emb: int, tick) -> float:
        spec = ModelSpec(name="latency-probe", input_size=(1, self.tokens, emb), mean=(0.0,), std=(1.0,),
                         num_classes=emb)  # fmt: skip
        return self._export_and_time(probe, spec=spec, tick=tick)

    def time_model(self, model: nn.Module, *, spec: ModelSpec, tick) -> float:
        return self._export_and_time(model, spec=spec, tick=tick)

    def _export_and_time(self, module: nn.Module, *, spec: ModelSpec, tick) -> float:
        with tempfile.TemporaryDirectory(prefix="vitopt-latency-") as tmp:
            runner = self.fmt.open_runner(_export(module, target=self.target, spec=spec, dest=Path(tmp)),
                                          threads=self.threads)  # fmt: skip
            call = functools.partial(runner.run, torch.randn(spec.batch_shape(1)).numpy())
            stats = measure(call, settings=BenchSettings(threads=self.threads, **PROBE_BENCH))
            del runner, call  # the session lets go of its files before the folder goes
        tick()
        return stats.p50


class AgainstOriginal:
    """The original model exported once; each pruned model then timed against it in one interleaved run
    (the same measurement the report makes, minus verification). A pruning run times its model before
    every step: exporting the unchanged original each time was a third of that cost (3.1 of 9.6 s per
    measurement for the ViT reference on ONNX Runtime, 2 cores)."""

    def __init__(self, original: nn.Module, *, spec: ModelSpec, target, threads: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="vitopt-latency-")
        self.spec, self.target, self.threads = spec, target, threads
        self.original_path = _export(original, target=target, spec=spec, dest=Path(self._tmp.name) / "original")

    def fraction(self, pruned: nn.Module) -> dict:
        from vitopt.bench import measure_interleaved

        fmt, dest = FORMATS.get(self.target.format), Path(self._tmp.name) / "pruned"
        shutil.rmtree(dest, ignore_errors=True)
        paths = {"original": self.original_path, "pruned": _export(pruned, target=self.target, spec=self.spec,
                                                                   dest=dest)}  # fmt: skip
        runners = {k: fmt.open_runner(p, threads=self.threads) for k, p in paths.items()}
        batch = np.zeros(self.spec.batch_shape(1), dtype=np.float32)
        settings = BenchSettings(threads=self.threads, warmup=5, min_runs=50, min_time_s=2.0, max_time_s=20.0)
        stats = measure_interleaved({k: functools.partial(r.run, batch) for k, r in runners.items()},
                                    settings=settings)  # fmt: skip
        del runners
        return {"original_ms": stats["original"].p50, "pruned_ms": stats["pruned"].p50,
                "fraction": stats["pruned"].p50 / stats["original"].p50}  # fmt: skip

    def close(self) -> None:
        self._tmp.cleanup()


def measured_fraction(original: nn.Module, pruned: nn.Module, *, spec: ModelSpec, target, threads: int) -> dict:
    """One pruned model's latency as a fraction of the original's (see ``AgainstOriginal``)."""
    timer = AgainstOriginal(original, spec=spec, target=target, threads=threads)
    try:
        return timer.fraction(pruned)
    finally:
        timer.close()
