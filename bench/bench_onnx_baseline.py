"""ONNX Runtime vs PyTorch eager, and the noise floor of vitopt's same-run speedup.

Prints, for each model: export time, parity, and interleaved latency of
  - PyTorch eager (torch.no_grad, same thread count),
  - the ONNX artifact on ONNX Runtime,
  - the same ONNX artifact in two sessions, interleaved two-way exactly as `compress` compares
    baseline and candidate (A/A: its distance from 1.0 is the noise floor of a reported speedup).
Usage: .venv/bin/python bench/bench_onnx_baseline.py [--models deit_tiny_patch16_224 ...] [--min-time 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vitopt.backends.onnx.exporter import OnnxExporter
from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.data import load_batch
from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.formats import FORMATS
from vitopt.models import load_model
from vitopt.verify import check_parity, torch_logits


def bench_model(name: str, *, min_time: float, threads: int) -> dict:
    model = load_model(name=name)
    images = load_batch(spec=model.spec, n=32)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        artifact = OnnxExporter(fmt=FORMATS.get("onnx"), precision="fp32", options={}).export(
            model.module, spec=model.spec, staging=Path(tmp), calibration=images
        )
        export_s = time.perf_counter() - start
        a, b = (OnnxRuntimeRunner(artifact.main, threads=threads) for _ in range(2))
        parity = check_parity(reference=torch_logits(model.module, images), runner=a, images=images,
                              max_abs_diff=1e-4, min_top1_agreement=1.0)  # fmt: skip
        x = images[:1].numpy()
        xt = images[:1]
        settings = BenchSettings(min_runs=50, min_time_s=min_time, threads=threads)
        with torch.no_grad():
            stats = measure_interleaved({"torch": lambda: model.module(xt), "ort": lambda: a.run(x)}, settings=settings)
        # A/A: the two-way comparison compress makes, on one artifact: the noise floor of a speedup
        stats |= {f"aa_{k}": v for k, v in measure_interleaved(
            {"a": lambda: a.run(x), "b": lambda: b.run(x)}, settings=settings).items()}  # fmt: skip
    return {"name": name, "export_s": export_s, "parity": parity, "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["deit_tiny_patch16_224", "vitopt/vit-cifar10"])
    parser.add_argument("--min-time", type=float, default=5.0)
    args = parser.parse_args()
    threads = default_threads()
    torch.set_num_threads(threads)
    print(f"# {summary_line(describe_environment(threads=threads), load=True)}")
    print("| model | export s | max abs diff | top-1 agr | torch p50 ms | ORT p50 ms | ORT p90 ms | ORT cv | "
          "ORT vs torch | A/A ratio |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        r = bench_model(name, min_time=args.min_time, threads=threads)
        s = r["stats"]
        print(f"| {name} | {r['export_s']:.1f} | {r['parity'].max_abs_diff:.2e} | {r['parity'].top1_agreement:.3f} "
              f"| {s['torch'].p50:.3f} | {s['ort'].p50:.3f} | {s['ort'].p90:.3f} | {s['ort'].cv:.3f} "
              f"| {speedup(baseline=s['torch'], candidate=s['ort']):.2f}x "
              f"| {speedup(baseline=s['aa_b'], candidate=s['aa_a']):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
