"""ONNX opset 18 vs 20: what exporting GELU as one ``Gelu`` operator buys on ONNX Runtime and OpenVINO.

At opset 18 torch's exporter writes GELU as Div/Erf/Add/Mul/Mul, in an order ONNX Runtime's Gelu fusion
does not match; opset 20 has a ``Gelu`` operator. For each model (timm weights are random: latency and parity
do not depend on the values) both opsets are exported by vitopt's ONNX exporter and compared on 32 real
images and in batch-1 latency, the two artifacts interleaved two-way per runtime, so the ratio is same-run.
OpenVINO reads the ONNX files directly (f32 pinned, as vitopt's runner does).
Usage: .venv/bin/python bench/bench_onnx_opset.py [--models deit_tiny_patch16_224 ...] [--min-time 5]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import onnx
import torch

from vitopt.backends.onnx.exporter import OnnxExporter
from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.backends.openvino.runner import OpenVinoRunner
from vitopt.bench import BenchSettings, measure_interleaved, speedup
from vitopt.data import load_batch
from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.formats import FORMATS
from vitopt.models import load_model
from vitopt.verify import check_parity, torch_logits

MODELS = ["deit_tiny_patch16_224", "repvit_m0_9", "levit_128s", "swin_tiny_patch4_window7_224"]
OPSETS = (18, 20)
RUNNERS = {"onnxruntime": OnnxRuntimeRunner, "openvino": OpenVinoRunner}


def export(model, images: torch.Tensor, opset: int, staging: Path) -> tuple[Path, int]:
    staging.mkdir()
    options = {"opset": opset}
    artifact = OnnxExporter(fmt=FORMATS.get("onnx"), precision="fp32", options=options).export(
        model.module, spec=model.spec, staging=staging, calibration=images)  # fmt: skip
    ops = collections.Counter(n.op_type for n in onnx.load(str(artifact.main)).graph.node)
    return artifact.main, ops["Erf"]


def bench_model(name: str, *, min_time: float, threads: int) -> dict:
    model = load_model(name=name)
    images = load_batch(spec=model.spec, n=32)
    reference = torch_logits(model.module, images)
    settings = BenchSettings(warmup=10, min_runs=50, min_time_s=min_time, threads=threads)
    result = {"name": name, "erf": {}, "diff": {}, "stats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for opset in OPSETS:
            paths[opset], result["erf"][opset] = export(model, images, opset, Path(tmp) / str(opset))
        for runtime, runner_class in RUNNERS.items():
            runners = {opset: runner_class(path, threads=threads) for opset, path in paths.items()}
            for opset, runner in runners.items():
                parity = check_parity(reference=reference, runner=runner, images=images,
                                      max_abs_diff=1e-3, min_top1_agreement=1.0)  # fmt: skip
                result["diff"][runtime, opset] = parity.max_abs_diff
            x = images[:1].numpy()
            calls = {opset: (lambda r=r, x=x: r.run(x)) for opset, r in runners.items()}
            result["stats"][runtime] = measure_interleaved(calls, settings=settings)
    return result


def print_row(r: dict) -> None:
    cells = [r["name"], f"{r['erf'][18]} / {r['erf'][20]}"]
    for runtime in RUNNERS:
        s = r["stats"][runtime]
        diff = max(r["diff"][runtime, o] for o in OPSETS)
        cells += [f"{s[18].p50:.2f}", f"{s[20].p50:.2f}", f"{speedup(baseline=s[18], candidate=s[20]):.2f}x",
                  f"{diff:.1e}"]  # fmt: skip
    print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--min-time", type=float, default=5.0)
    args = parser.parse_args()
    threads = default_threads()
    torch.set_num_threads(threads)
    print(f"# {summary_line(describe_environment(threads=threads), load=True)}")
    print("| model | Erf nodes 18 / 20 | ORT 18 ms | ORT 20 ms | ORT 20 vs 18 | ORT max diff "
          "| OV 18 ms | OV 20 ms | OV 20 vs 18 | OV max diff |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        print_row(bench_model(name, min_time=args.min_time, threads=threads))


if __name__ == "__main__":
    main()
