"""OpenVINO vs ONNX Runtime on the CPU, what fp16-compressed OpenVINO weights cost or save, and
what the targets without a runtime here (Core ML, TensorRT) cost to produce and check.

For each model: export to ONNX and to OpenVINO IR (fp32 and fp16 weights), check parity on
real images, then measure two interleaved pairs in the same run, as `compress` does:
  - ORT fp32 vs OpenVINO fp32 (which CPU runtime to ship),
  - OpenVINO fp32 vs OpenVINO fp16 weights (compute stays f32 on CPU; only storage halves).
Then per model: Core ML packages (fp16, fp32) with their conversion time, size, rewrites and the
Linux validation, and the TensorRT-prepared ONNX with its parity on ONNX Runtime.
Usage: .venv/bin/python bench/bench_exporters.py [--models deit_tiny_patch16_224 ...] [--min-time 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.backends.openvino.runner import OpenVinoRunner
from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.data import load_batch
from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.formats import FORMATS
from vitopt.models import load_model
from vitopt.verify import check_parity, torch_logits


def export(model, *, target: str, precision: str, staging: Path, images):
    fmt = FORMATS.get(target)
    staging.mkdir(parents=True, exist_ok=True)
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


def bench_static_targets(name: str) -> dict:
    """Export cost and checks for the targets whose runtimes do not exist on this machine."""
    from vitopt.backends.coreml.validate import validate_mlpackage

    model = load_model(name=name)
    images = load_batch(spec=model.spec, n=32)
    row: dict = {"name": name}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp16", "fp32"):
            artifact, seconds = export(model, target="coreml", precision=precision, staging=Path(tmp) / precision,
                                       images=images)  # fmt: skip
            checked = validate_mlpackage(artifact.main, spec=model.spec, precision=precision)["checked"]
            row[precision] = {"s": seconds, "mib": artifact.size_bytes / 2**20, "details": artifact.details,
                              "checks": len(checked)}  # fmt: skip
        trt, row["trt_s"] = export(model, target="tensorrt", precision="fp32", staging=Path(tmp) / "trt", images=images)
        row["trt_parity"] = check_parity(reference=torch_logits(model.module, images),
                                         runner=OnnxRuntimeRunner(trt.main, threads=1), images=images,
                                         max_abs_diff=1e-3, min_top1_agreement=1.0)  # fmt: skip
    return row


def print_static_targets(models: list[str]) -> None:
    print("\n| model | Core ML convert s fp16 / fp32 | package MiB fp16 / fp32 | rewrites (rank>5 ops, rolls, aliases) "
          "| Linux checks passed | TRT-ONNX export s | TRT-ONNX max diff / top-1 on ORT |")  # fmt: skip
    print("|---|---|---|---|---|---:|---|")
    for name in models:
        r = bench_static_targets(name)
        d, p = r["fp16"]["details"], r["trt_parity"]
        print(f"| {name} | {r['fp16']['s']:.1f} / {r['fp32']['s']:.1f} "
              f"| {r['fp16']['mib']:.1f} / {r['fp32']['mib']:.1f} "
              f"| {d.get('ranks_lowered', 0)}, {d.get('rolls_as_slices', 0)}, {d.get('aliases_dropped', 0)} "
              f"| {r['fp16']['checks']} + {r['fp32']['checks']} | {r['trt_s']:.1f} "
              f"| {p.max_abs_diff:.1e} / {p.top1_agreement:.3f} |")  # fmt: skip


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
    print(f"# {summary_line(describe_environment(threads=threads), load=True)}")
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
    print_static_targets(args.models)


if __name__ == "__main__":
    main()
