"""Structural reparameterisation: the model exported as is vs timm's own fuse vs vitopt, on ONNX Runtime and OpenVINO.

For each model (random weights with randomised BatchNorm statistics; latency does not depend on the values):
  - unfused: the model exported as is (what a user ships by mistake),
  - timm:    ``timm.utils.reparameterize_model`` (each family's own fuse / reparameterize methods),
  - vitopt:  the ``reparam`` pass (``vitopt.reparam.reparameterize``, strategy auto, verified on real images).
All three go through vitopt's ONNX exporter (torch.export-based, onnxslim) exactly as ``compress`` exports.
Printed per model: what is left (BatchNorm modules, and the folds vitopt still finds in timm's output), ONNX op
counts, parity with the unfused PyTorch model on 32 real images, and batch-1 CPU latency on ONNX Runtime and
OpenVINO, the three candidates interleaved in one run per runtime (rotating order), so ratios are same-run.
With ``--runtimes torch`` the three modules are also timed in PyTorch eager.
Usage: .venv/bin/python bench/bench_reparam.py [--models repvit_m0_9 ...] [--min-time 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from vitopt.backends.onnx.exporter import OnnxExporter
from vitopt.backends.onnx.runner import OnnxRuntimeRunner
from vitopt.bench import BenchSettings, measure_interleaved
from vitopt.data import load_batch
from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.formats import FORMATS
from vitopt.models import spec_from_timm
from vitopt.reparam import count_batch_norms, reparameterize

MODELS = ["repvit_m0_9", "repvit_m1_1", "fastvit_t8", "levit_128s", "efficientformer_l1"]
CANDIDATES = ("unfused", "timm", "vitopt")


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.randn(m.num_features, generator=g) * 0.5 + 1.0)
                    m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
    return model


class OpenVinoRunner:
    """OpenVINO CPU, fp32, static batch-1 shape, latency hint (vitopt's own OpenVINO runner lands with issue #5)."""

    def __init__(self, path: Path, *, threads: int, shape: tuple[int, ...]) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": "f32",
        }  # fp32 artifacts: no silent bf16 on AMX CPUs
        self.request = core.compile_model(model, "CPU", config).create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({0: np.ascontiguousarray(batch, np.float32)})[0]


class TorchRunner:
    """PyTorch eager (inference mode): the runtime a user serving the module itself gets, where no exporter or
    runtime folds a BatchNorm before the pass does."""

    def __init__(self, module: nn.Module, *, threads: int) -> None:
        self.module, self.threads = module, threads

    def run(self, batch: np.ndarray) -> np.ndarray:
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).numpy()


def variants(name: str, images: torch.Tensor) -> tuple[dict[str, nn.Module], dict]:
    model = randomize_bn(timm.create_model(name)).eval()
    timm_fused = timm.utils.reparameterize_model(model)
    ours = reparameterize(model, images=images[:16])
    missed = reparameterize(timm_fused, images=images[:16], strategy="generic").details["folds"]
    modules = {"unfused": model, "timm": timm_fused, "vitopt": ours.module}
    info = {
        "bn": {k: count_batch_norms(m) for k, m in modules.items()},
        "vitopt_folds": ours.details["folds"],
        "native": ours.details["native"],
        "timm_missed": missed,
    }
    return modules, info


def export_all(modules: dict[str, nn.Module], spec, images, staging: Path) -> tuple[dict[str, Path], dict]:
    import onnx

    paths, ops = {}, {}
    for tag, module in modules.items():
        (staging / tag).mkdir()
        artifact = OnnxExporter(fmt=FORMATS.get("onnx"), precision="fp32", options={}).export(
            module, spec=spec, staging=staging / tag, calibration=images)  # fmt: skip
        paths[tag] = artifact.main
        ops[tag] = collections.Counter(n.op_type for n in onnx.load(str(artifact.main)).graph.node)
    return paths, ops


def measure(runners: dict, x: np.ndarray, settings: BenchSettings) -> dict:
    return measure_interleaved({tag: (lambda r=r: r.run(x)) for tag, r in runners.items()}, settings=settings)


def bench_model(name: str, *, min_time: float, threads: int, runtimes: list[str]) -> dict:
    spec = spec_from_timm(timm.create_model(name), name=name)
    images = load_batch(spec=spec, n=32)
    modules, info = variants(name, images)
    with torch.no_grad():
        reference = modules["unfused"](images).numpy()
    settings = BenchSettings(warmup=10, min_runs=50, min_time_s=min_time, threads=threads)
    result = {"name": name, **info, "latency": {}, "parity": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths, result["ops"] = export_all(modules, spec, images, Path(tmp))
        for runtime in runtimes:
            runners = {tag: _runner(runtime, path, threads, spec, modules[tag]) for tag, path in paths.items()}
            result["parity"][runtime] = {tag: _max_diff(r, images, reference) for tag, r in runners.items()}
            result["latency"][runtime] = measure(runners, images[:1].numpy(), settings)
    return result


def _max_diff(runner, images: torch.Tensor, reference: np.ndarray) -> float:
    logits = np.concatenate([runner.run(images[i : i + 1].numpy()) for i in range(len(images))])
    return float(np.abs(logits - reference).max())


def _runner(runtime: str, path: Path, threads: int, spec, module: nn.Module):
    if runtime == "torch":
        return TorchRunner(module, threads=threads)
    if runtime == "onnxruntime":
        return OnnxRuntimeRunner(path, threads=threads)
    return OpenVinoRunner(path, threads=threads, shape=spec.batch_shape(1))


def _ops(counter: collections.Counter) -> str:
    keys = ("BatchNormalization", "Conv", "Add", "MatMul", "Gemm")
    return f"{sum(counter.values())} ({', '.join(f'{k} {counter[k]}' for k in keys if counter[k])})"


def print_tables(results: list[dict], runtimes: list[str]) -> None:
    print("\n| model | BN left: unfused / timm / vitopt | vitopt folds | vitopt still folds in timm's output |")
    print("|---|---|---|---|")
    for r in results:
        bn = r["bn"]
        print(
            f"| {r['name']} | {bn['unfused']} / {bn['timm']} / {bn['vitopt']} | {_kinds(r['vitopt_folds'])} "
            f"| {_kinds(r['timm_missed']) or 'nothing'} |"
        )
    print("\n| model | ONNX nodes unfused | timm | vitopt |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | " + " | ".join(_ops(r["ops"][c]) for c in CANDIDATES) + " |")
    for runtime in runtimes:
        print(f"\n{runtime}, batch 1: p50 ms (p90), max |logit diff| vs unfused PyTorch on 32 images")
        print("\n| model | unfused | timm | vitopt | vitopt vs unfused | vitopt vs timm | max diff vitopt |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in results:
            s = r["latency"][runtime]
            cells = " | ".join(f"{s[c].p50:.3f} ({s[c].p90:.3f})" for c in CANDIDATES)
            print(
                f"| {r['name']} | {cells} | {s['unfused'].p50 / s['vitopt'].p50:.2f}x "
                f"| {s['timm'].p50 / s['vitopt'].p50:.2f}x | {r['parity'][runtime]['vitopt']:.2e} |"
            )


def _kinds(folds: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(folds.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--min-time", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"], help="also: torch (eager)")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    torch.set_num_threads(1)  # one thread keeps folding and exports quick on a busy machine; TorchRunner sets its own
    print(f"# {summary_line(describe_environment(threads=threads), load=True)}")
    results = []
    for name in args.models:
        results.append(bench_model(name, min_time=args.min_time, threads=threads, runtimes=args.runtimes))
        print(f"done {name}", flush=True)
    print_tables(results, args.runtimes)


if __name__ == "__main__":
    main()
