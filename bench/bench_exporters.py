"""OpenVINO vs ONNX Runtime on the CPU, and what fp16-compressed OpenVINO weights cost or save.

For each model: export to ONNX and to OpenVINO IR (fp32 and fp16 weights), check parity on
real images, then measure two interleaved pairs in the same run, as `compress` does:
  - ORT fp32 vs OpenVINO fp32 (which CPU runtime to ship),
  - OpenVINO fp32 vs OpenVINO fp16 weights (compute stays f32 on CPU; only storage halves).
Usage: .venv/bin/python bench/bench_exporters.py [--models deit_tiny_patch16_224 ...] [--min-time 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.data import load_batch
from vitopt.environment import default_threads, describe_environment
from vitopt.formats import FORMATS
from vitopt.models import load_model
from vitopt.runtimes.onnxruntime import OnnxRuntimeRunner
from vitopt.runtimes.openvino import OpenVinoRunner
from vitopt.verify import check_parity, torch_logits


def export(model, *, target: str, precision: str, staging: Path, images):
    fmt = FORMATS.get(target)
    start = time.perf_counter()
    artifact = fmt.exporter_class()(fmt=fmt, precision=precision, options={}).export(
        model.module, spec=model.spec, staging=staging, calibration=images
    )
    return artifact, time.perf_counter() - start


def bench_model(name: str, *, min_time: float, threads: int) -> dict:
    model = load_model(name=name)
    images = load_batch(spec=model.spec, n=32)
    reference = torch_logits(model.module, images)
    row: dict = {"name": name}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {}
        for key, (target, precision, runner_cls) in VARIANTS.items():
            artifact, row[f"{key}_export_s"] = export(model, target=target, precision=precision,
                                                      staging=Path(tmp) / key, images=images)  # fmt: skip
            runners[key] = runner_cls(artifact.main, threads=threads)
            row[f"{key}_parity"] = check_parity(reference=reference, runner=runners[key], images=images,
                                                max_abs_diff=1e-2, min_top1_agreement=1.0)  # fmt: skip
            row[f"{key}_mib"] = artifact.size_bytes / 2**20
        x = images[:1].numpy()
        settings = BenchSettings(min_runs=50, min_time_s=min_time, threads=threads)
        for a, b in (("ort", "ov"), ("ov", "ov16")):
            pair = {a: lambda r=runners[a]: r.run(x), b: lambda r=runners[b]: r.run(x)}
            row[f"{a}_vs_{b}"] = measure_interleaved(pair, settings=settings)
    return row


VARIANTS = {"ort": ("onnx", "fp32", OnnxRuntimeRunner), "ov": ("openvino", "fp32", OpenVinoRunner),
            "ov16": ("openvino", "fp16", OpenVinoRunner)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["deit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
                                                         "vitopt/vit-cifar10"])  # fmt: skip
    parser.add_argument("--min-time", type=float, default=5.0)
    args = parser.parse_args()
    threads = default_threads()
    torch.set_num_threads(threads)
    env = describe_environment(threads=threads)
    print(f"# {env['cpu_model']}, {threads} threads, load {env.get('load_average')}, onnxruntime "
          f"{env['packages']['onnxruntime']}, openvino {env['packages']['openvino']}")  # fmt: skip
    print("| model | ORT p50 ms | OV fp32 p50 ms | OV vs ORT | OV fp16 p50 ms | fp16 vs fp32 | OV max diff fp32 / fp16 "
          "| IR MiB fp32 / fp16 | export s ORT / OV |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---|---|---|")
    for name in args.models:
        r = bench_model(name, min_time=args.min_time, threads=threads)
        first, second = r["ort_vs_ov"], r["ov_vs_ov16"]
        print(f"| {name} | {first['ort'].p50:.2f} | {first['ov'].p50:.2f} "
              f"| {speedup(baseline=first['ort'], candidate=first['ov']):.2f}x | {second['ov16'].p50:.2f} "
              f"| {speedup(baseline=second['ov'], candidate=second['ov16']):.2f}x "
              f"| {r['ov_parity'].max_abs_diff:.1e} / {r['ov16_parity'].max_abs_diff:.1e} "
              f"| {r['ov_mib']:.1f} / {r['ov16_mib']:.1f} | {r['ort_export_s']:.1f} / {r['ov_export_s']:.1f} |")


if __name__ == "__main__":
    main()
