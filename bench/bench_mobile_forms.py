"""Operator forms of an Android bundle's model (issue 17): ONNX Runtime's mobile checker verdict per form,
and what each form costs where it runs on the CPU (ONNX Runtime here, interleaved, same run).

For each model: a static batch-1 ONNX export, then each form vitopt's Android bundle judges (as exported,
LayerNormalization and/or Gelu written out in elementary operators), parity against the export, NNAPI and
CoreML partitions from the checker, and ORT CPU latency as a ratio to the as-exported graph.
Usage: .venv/bin/python bench/bench_mobile_forms.py [--models vitopt/vit-cifar10 deit_tiny_patch16_224]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from vitopt.backends.onnx.mobile_check import usability
from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.bench import BenchSettings, measure_interleaved
from vitopt.bundle.android import FORMS
from vitopt.bundle.mobile import parity
from vitopt.bundle.variants import decompose
from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.formats import FORMATS
from vitopt.models import load_model


def forms_of(name: str, *, work: Path) -> dict[str, Path]:
    model = load_model(name=name)
    fmt = FORMATS.get("onnx")
    exporter = fmt.exporter_class()(fmt=fmt, precision="fp32", options={"dynamic_batch": False})
    base = exporter.export(model.module, spec=model.spec, staging=work, calibration=None).main
    paths = {"as exported": base}
    for ops in FORMS[1:]:
        paths[" + ".join(ops)] = work / ("-".join(ops) + ".onnx")
        decompose(base, paths[" + ".join(ops)], ops=ops)
    return paths


def report(name: str, *, threads: int, min_time_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = forms_of(name, work=Path(tmp))
        runners = {k: OnnxRuntimeRunner(p, threads=threads) for k, p in paths.items()}
        x = np.random.default_rng(0).standard_normal(runners["as exported"].input_shape()).astype(np.float32)
        settings = BenchSettings(warmup=10, min_runs=50, min_time_s=min_time_s, threads=threads, batch_size=1)
        stats = measure_interleaved({k: (lambda r=r: r.run(x)) for k, r in runners.items()}, settings=settings)
        base = stats["as exported"].p50
        print(f"\n{name}: form | max|diff| | NNAPI partitions/coverage/verdict | CoreML MLProgram "
              "| ORT CPU p50 ms (ratio)")
        for key, path in paths.items():
            diff = parity(paths["as exported"], path, images=x.repeat(4, axis=0), tolerance=1e-3)["max_abs_diff"]
            check = usability(path)
            nn, ml = check["NNAPI"], check["CoreML MLProgram"]
            print(f"{key:32s} | {diff:.1e} | {nn['partitions']} / {nn['coverage']:.0%} / {nn['verdict']} | "
                  f"{ml['partitions']} / {ml['coverage']:.0%} / {ml['verdict']} | {stats[key].p50:.3f} "
                  f"({stats[key].p50 / base:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["vitopt/vit-cifar10", "deit_tiny_patch16_224"])
    parser.add_argument("--min-time", type=float, default=10.0)
    args = parser.parse_args()
    threads = default_threads()
    print(summary_line(describe_environment(threads=threads)))
    for name in args.models:
        report(name, threads=threads, min_time_s=args.min_time)


if __name__ == "__main__":
    main()
