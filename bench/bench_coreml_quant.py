"""Core ML weight compression: package size per scheme and the accuracy of each, simulated in PyTorch.

Core ML cannot run off macOS, so every candidate of `precision: auto` (fp32, fp16, int8-weights, palette8/6/4)
is converted, validated as a file and measured by size; each compressed scheme's accuracy comes from a PyTorch
model with the same weight compression (coremltools' torch-side compressors), as `compress` reports it.
Usage: .venv/bin/python bench/bench_coreml_quant.py [--model vitopt/vit-cifar10] [--eval-limit 2000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vitopt.environment import describe_environment, summary_line
from vitopt.models import load_model
from vitopt.pipeline import compress
from vitopt.recipe import parse_recipe

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(*, model: str, eval_limit: int) -> dict:
    recipe = parse_recipe({"version": 1, "name": "bench-coreml-quant",
                           "targets": [{"format": "coreml", "precision": "auto"}], "verify": {"n_images": 128}})
    with tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        return compress(model=load_model(name=model), recipe=recipe, out_dir=Path(tmp),
                        eval_data=DATA / "cifar10-test.tar", eval_limit=eval_limit)  # fmt: skip


def print_table(report: dict) -> None:
    rows = report["artifacts"]
    fp16 = next(r["size_bytes"] for r in rows if r["precision"] == "fp16")
    print("| scheme | status | package MiB | vs fp16 | top-1 | agreement with fp32 (128 images) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        acc = r.get("accuracy")
        top1 = f"{acc['top1']:.4f} (simulated)" if acc else "-"
        agree = f"{r['simulated']['top1_agreement']:.3f}" if r.get("simulated") else "-"
        print(f"| {r['precision']} | {r['status']} | {r['size_bytes'] / 2**20:.2f} | {r['size_bytes'] / fp16:.2f}x "
              f"| {top1} | {agree} |")  # fmt: skip
    acc = report["baseline"]["accuracy"]
    print(f"\nUnmodified PyTorch model: top-1 {acc['top1']:.4f} on {acc['n_images']} images.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vitopt/vit-cifar10")
    parser.add_argument("--eval-limit", type=int, default=2000)
    args = parser.parse_args()
    print("# " + summary_line(describe_environment(), load=True))
    print(f"\n### {args.model}, Core ML candidates\n")
    print_table(run(model=args.model, eval_limit=args.eval_limit))


if __name__ == "__main__":
    main()
