"""NViT pruning benchmarks (issue 11); results go to bench/RESULTS.md by hand, this prints what it measured.

Parts (``--parts``, default all):
  curve        vitopt/vit-cifar10 pruned to latency budgets 0.8 / 0.65 / 0.5 / 0.4 of its ONNX Runtime latency,
               KD fine-tuned with a fixed budget (``--epochs``, default 1 epoch of CIFAR-10 train in all);
               measured ORT speedup (interleaved with the original) and CIFAR-10 test top-1.
  compare      at a latency budget of 0.5 and the same fine-tune budget: vitopt (Hessian, ratio rank) vs
               torch-pruning's MetaPruner with Taylor and magnitude importances and uniform width scaling, each
               one-shot pruned to the latency vitopt measured (pruning ratio found by bisection on measured
               latency), then KD fine-tuned for the same number of images.
  saliency     seconds to score every unit: vitopt's batched Hessian saliency vs torch-pruning's
               GroupHessianImportance (per-sample backward), same model, same 256 samples.
  deit         DeiT-Small 224 (random weights, ImageNet sample images for saliency, no fine-tune): latency budget 0.5
               on ONNX Runtime and OpenVINO; how close the measured fraction lands to 0.5.
Usage: .venv/bin/python bench/bench_nvit.py [--parts curve compare saliency deit] [--epochs 1.0] [--eval-limit 5000]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.evaluate import accuracy, evaluation_loader, torch_predict
from vitopt.models import load_model
from vitopt.passes import PassContext
from vitopt.pruning.finetune import FinetuneOptions, finetune
from vitopt.pruning.latency_measure import measured_fraction
from vitopt.pruning.prune_pass import PruneOptions, PrunePass
from vitopt.recipe import Target

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRAIN, TEST, IMAGENET = DATA / "cifar10-train.tar", DATA / "cifar10-test.tar", DATA / "imagenet-samples-256.tar"
N_TRAIN, STEPS = 50_000, 4
ONNX = Target(format="onnx")


def context(model, *, work: Path, target=ONNX, data=TRAIN) -> PassContext:
    return PassContext(spec=model.spec, teacher=copy.deepcopy(model.module).eval(), data=data, work_dir=work,
                       targets=(target,), threads=default_threads(), extras={"main": True})  # fmt: skip


def schedule(epochs: float) -> dict:
    """Half the fine-tune budget between the steps, half after them."""
    return {"steps": STEPS, "step_epochs": epochs / 2,
            "finetune": {"epochs": 1, "images_per_epoch": int(N_TRAIN * epochs / 2)}}  # fmt: skip


def vitopt_prune(model, *, budget: float, epochs: float, target=ONNX, data=TRAIN, extra: dict | None = None):
    options = PruneOptions(latency=budget, **{**schedule(epochs), **(extra or {})})
    with tempfile.TemporaryDirectory() as tmp:
        result = PrunePass(options).run(copy.deepcopy(model.module), context=context(model, work=Path(tmp),
                                                                                       target=target, data=data))
    return result.module, result.details


def judge(model, pruned, *, eval_limit: int, target=ONNX, evaluate: bool = True) -> dict:
    seen = measured_fraction(model.module, pruned, spec=model.spec, target=target, threads=default_threads())
    row = {"fraction": round(seen["fraction"], 4), "speedup": round(1 / seen["fraction"], 3),
           "params": sum(p.numel() for p in pruned.parameters())}  # fmt: skip
    if evaluate:
        loader = evaluation_loader(path=TEST, spec=model.spec, limit=eval_limit)
        row["top1"] = accuracy(predict=torch_predict(pruned.eval()), loader=loader)["top1"]
    return row


def part_curve(model, args) -> list[dict]:
    rows = []
    for budget in args.budgets:
        started = time.perf_counter()
        pruned, details = vitopt_prune(model, budget=budget, epochs=args.epochs)
        minutes = round((time.perf_counter() - started) / 60, 1)
        rows.append({"budget": budget, **judge(model, pruned, eval_limit=args.eval_limit),
                     "predicted": details["predicted"]["fraction"], "minutes": minutes})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def part_compare(model, args) -> list[dict]:
    from tp_baselines import prune_with_torch_pruning, uniform_width_vit

    pruned, _ = vitopt_prune(model, budget=0.5, epochs=args.epochs)
    ours = judge(model, pruned, eval_limit=args.eval_limit)
    rows = [{"method": "vitopt (hessian, ratio rank)", **ours}]
    print(json.dumps(rows[-1]), flush=True)
    batches = labelled_batches(model, n=256, batch=32)
    makers = {
        "tp MetaPruner + Taylor": lambda r: prune_with_torch_pruning(model.module, importance="taylor", ratio=r,
                                                                     example_inputs=batches[0][0][:1], batches=batches),
        "tp MetaPruner + magnitude": lambda r: prune_with_torch_pruning(model.module, importance="magnitude", ratio=r,
                                                                        example_inputs=batches[0][0][:1]),
        "uniform width": lambda r: uniform_width_vit(model.module, width_fraction=1 - r),
    }  # fmt: skip
    for name, make in makers.items():
        baseline, ratio = match_latency(model, make, ours["fraction"])
        with tempfile.TemporaryDirectory() as tmp:
            finetune(baseline, context=context(model, work=Path(tmp)), options=FinetuneOptions(),
                     out_dir=Path(tmp) / "ft", epochs=1, images_per_epoch=int(N_TRAIN * args.epochs))  # fmt: skip
        rows.append({"method": name, "ratio": round(ratio, 3), **judge(model, baseline, eval_limit=args.eval_limit)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def match_latency(model, make, goal: float, iterations: int = 6):
    """Bisection on the pruning ratio until the measured latency fraction is at or just under ``goal``."""
    lo, hi, best = 0.0, 0.9, None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        candidate = make(mid)
        seen = measured_fraction(model.module, candidate, spec=model.spec, target=ONNX, threads=default_threads())
        if seen["fraction"] <= goal:
            best, hi = (candidate, mid), mid
        else:
            lo = mid
    return best or (make(hi), hi)


def labelled_batches(model, *, n: int, batch: int):
    loader = evaluation_loader(path=TRAIN, spec=model.spec, limit=n, batch_size=batch)
    return [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in loader]


def part_saliency(model, args) -> dict:
    from tp_baselines import time_group_hessian

    from vitopt.pruning import saliency
    from vitopt.pruning.families import family_for

    batches = labelled_batches(model, n=256, batch=32)
    started = time.perf_counter()
    saliency.estimate(copy.deepcopy(model.module), family=family_for(model.module), criterion="hessian",
                      teacher=model.module, batches=[x for x, _ in batches])  # fmt: skip
    ours = time.perf_counter() - started
    theirs = time_group_hessian(model.module, batches=batches)
    row = {"samples": 256, "vitopt_s": round(ours, 2), "tp_group_hessian_s": round(theirs, 2),
           "ratio": round(theirs / ours, 1)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def part_deit(args) -> list[dict]:
    torch.manual_seed(0)
    model = load_model(name="deit_small_patch16_224")
    rows = []
    for fmt in ("onnx", "openvino"):
        target = Target(format=fmt)
        pruned, details = vitopt_prune(model, budget=0.5, epochs=0, target=target, data=IMAGENET,
                                       extra={"steps": args.deit_steps, "step_epochs": 0, "finetune": {"epochs": 0},
                                              "saliency_images": 64, "saliency_batch": 16})  # fmt: skip
        row = {"target": fmt, **judge(model, pruned, eval_limit=0, target=target, evaluate=False),
               "predicted": details["predicted"]["fraction"], "extra_steps": len(details["measured_during_pruning"])}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", nargs="+", default=["curve", "compare", "saliency", "deit"])
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.8, 0.65, 0.5, 0.4])
    parser.add_argument("--deit-steps", type=int, default=6)
    parser.add_argument("--eval-limit", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(summary_line(describe_environment(threads=default_threads()), load=True), flush=True)
    model = load_model(name="vitopt/vit-cifar10")
    results = {}
    for part in args.parts:
        results[part] = part_deit(args) if part == "deit" else globals()[f"part_{part}"](model, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
