"""DIMAP benchmarks (issue 12); results go to bench/RESULTS.md by hand, this prints what it measured.

Parts (``--parts``, default all):
  ablation     vitopt/swin-cifar10, unstructured, no data and no fine-tune, at 50% and 70% sparsity: DIMAP's
               module-aware importance vs one global importance threshold vs uniform per-layer magnitude;
               CIFAR-10 test top-1.
  reference    vitopt/swin-cifar10, unstructured 50%: top-1 with no fine-tune and after a 1-epoch KD fine-tune
               (the structured 50%-FLOPs + 2-epoch number is the acceptance command's report).
  rules        structured at 50% of the FLOPs, no data and no fine-tune, per rule (rank: cost, rank: equal,
               rank: cost with min_keep 0.25, rank: latency): vitopt/swin-cifar10 top-1 (use --eval-limit 2000
               for the README's numbers) and swin_tiny_patch4_window7_224's ONNX Runtime / OpenVINO speedup
               (interleaved, 8 s).
  speed        swin_tiny_patch4_window7_224 at 224 (random weights, no data): the shipped recipes through
               compress: structured 50% FLOPs on ONNX Runtime and OpenVINO (interleaved speedup vs the unpruned
               model) and artifact size per target per mode (dense, unstructured 50%, structured).
Usage: .venv/bin/python bench/bench_dimap.py [--parts ablation reference rules speed] [--eval-limit N]
       [--rules cost equal latency]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

from vitopt.environment import default_threads, describe_environment, summary_line
from vitopt.evaluate import accuracy, evaluation_loader, torch_predict
from vitopt.models import load_model
from vitopt.passes import PassContext, pass_registry
from vitopt.pruning import dimap
from vitopt.pruning.finetune import FinetuneOptions

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def run_dimap(module, **options):
    """The pass with no data; rank: latency measures its unit costs on ONNX Runtime (the rules' first target)."""
    from vitopt.recipe import Target

    cls = pass_registry().get("dimap")
    context = PassContext(spec=None, targets=(Target(format="onnx"),), threads=default_threads())
    return cls(cls.Options(**options)).run(module, context=context).module


@torch.no_grad()
def masked(module, mask_of) -> torch.nn.Module:
    """``module`` with every DIMAP-module weight multiplied by ``mask_of(layers)``'s masks."""
    layers = dimap.module_layers(module, dimap.DEFAULT_MODULES)
    named = dict(module.named_modules())
    for name, mask in mask_of(layers).items():
        named[name].weight.mul_(mask)
    return module


def global_threshold(sparsity):
    def masks(layers):
        merged = {"all": [pair for members in layers.values() for pair in members]}
        return dimap.unstructured_masks(merged, sparsity=sparsity)

    return masks


def uniform_magnitude(sparsity):
    def masks(layers):
        out = {}
        for members in layers.values():
            for name, layer in members:
                w = layer.weight.abs().flatten()
                k = int(sparsity * w.numel())
                out[name] = layer.weight.abs() > (w.kthvalue(k).values if k else w.min() - 1)
        return out

    return masks


def ablation(loader, base) -> None:
    print("\n## ablation: unstructured, no data, no fine-tune (CIFAR-10 test top-1)")
    print(f"unpruned: {accuracy(predict=torch_predict(base.module), loader=loader)['top1']:.4f}")
    for sparsity in (0.5, 0.7):
        rules = {"DIMAP module-aware": lambda m, s=sparsity: run_dimap(m, mode="unstructured", sparsity=s),
                 "one global importance threshold": lambda m, s=sparsity: masked(m, global_threshold(s)),
                 "uniform per-layer magnitude": lambda m, s=sparsity: masked(m, uniform_magnitude(s))}  # fmt: skip
        for name, rule in rules.items():
            top1 = accuracy(predict=torch_predict(rule(copy.deepcopy(base.module)).eval()), loader=loader)["top1"]
            print(f"sparsity {sparsity:.0%}  {name:34s} top-1 {top1:.4f}")


def reference(loader, base, work: Path) -> None:
    print("\n## reference: unstructured 50% (CIFAR-10 test top-1)")
    pruned = run_dimap(copy.deepcopy(base.module), mode="unstructured", sparsity=0.5)
    print(f"no fine-tune: {accuracy(predict=torch_predict(pruned), loader=loader)['top1']:.4f}")
    cls = pass_registry().get("dimap")
    options = cls.Options(mode="unstructured", sparsity=0.5, finetune=FinetuneOptions(epochs=1))
    context = PassContext(spec=base.spec, teacher=copy.deepcopy(base.module).eval(), data=DATA / "cifar10-train.tar",
                          work_dir=work)  # fmt: skip
    tuned = cls(options).run(copy.deepcopy(base.module), context=context).module
    print(f"1-epoch KD fine-tune: {accuracy(predict=torch_predict(tuned), loader=loader)['top1']:.4f}")


RULES = {"rank: cost": {"rank": "cost"}, "rank: equal": {"rank": "equal"},
         "rank: cost, min_keep 0.25": {"rank": "cost", "min_keep": 0.25}, "rank: latency": {"rank": "latency"}}


def rules(loader, base, work: Path, only: list[str] | None) -> None:
    from vitopt.pipeline import compress
    from vitopt.recipe import parse_recipe

    print("\n## structured rules at 50% FLOPs, no data, no fine-tune")
    tiny = load_model(name="swin_tiny_patch4_window7_224")
    for name, rule in RULES.items():
        if only and rule["rank"] not in only:
            continue
        pruned = run_dimap(copy.deepcopy(base.module), mode="structured", flops=0.5, **rule)
        top1 = accuracy(predict=torch_predict(pruned), loader=loader)["top1"]
        recipe = parse_recipe({"version": 1, "name": "rule", "targets": [{"format": "onnx"}, {"format": "openvino"}],
                               "passes": [{"name": "dimap", "options": {"mode": "structured", "flops": 0.5, **rule}}],
                               "bench": {"warmup": 5, "min_runs": 60, "min_time_s": 8}})  # fmt: skip
        report = compress(model=tiny, recipe=recipe, out_dir=work / name.replace(" ", "").replace(":", "-"))
        speedups = ", ".join(f"{a['target']} {a['speedup']:.2f}x" for a in report["artifacts"])
        params = report["compressed_model"]["params"]
        print(f"{name:28s} reference top-1 {top1:.4f}  swin_tiny {speedups}  params {params}")
        if rule["rank"] == "latency":
            print_unit_prices(tiny.module)


def print_unit_prices(module) -> None:
    """What rank: latency priced (ms per unit, per stage; cached by the run above) against FLOPs per unit."""
    from vitopt.pruning.dimap_structured import Budget
    from vitopt.pruning.families import family_for
    from vitopt.pruning.unit_latency import unit_costs_ms
    from vitopt.recipe import Target

    family = family_for(module)
    ms = unit_costs_ms(module, family=family, target=Target(format="onnx"), threads=default_threads())
    budget = Budget(module, family, kind="flops", target=0.5)
    for stage, blocks in enumerate(family.stages(module), start=1):
        i = blocks[0]
        flops = budget.unit_cost("heads", i) / budget.unit_cost("mlp", i)
        print(f"  stage {stage}: {ms['heads', i]:.4f} ms per head, {ms['mlp', i]:.5f} ms per MLP unit: a head costs "
              f"{ms['heads', i] / ms['mlp', i]:.0f} MLP units measured, {flops:.0f} by FLOPs")


def speed(work: Path) -> None:
    from vitopt.pipeline import compress
    from vitopt.recipes import resolve_recipe

    print("\n## speed and size: swin_tiny_patch4_window7_224 at 224, random weights, no data")
    model = load_model(name="swin_tiny_patch4_window7_224")
    runs = {"dense (baseline recipe)": ("baseline", ["onnx", "openvino", "coreml"]),
            "unstructured 50%": ("dimap-unstructured-50", ["onnx", "openvino", "coreml"]),
            "structured 50% FLOPs": ("dimap-structured-flops50", ["onnx", "openvino", "coreml"])}  # fmt: skip
    for name, (recipe, targets) in runs.items():
        report = compress(model=model, recipe=resolve_recipe(recipe=recipe, targets=targets), out_dir=work / recipe)
        for row in report["artifacts"]:
            speed_text = f"{row['speedup']:.2f}x" if row.get("speedup") else row["status"]
            print(f"{name:24s} {row['target']:9s} {row['precision']:5s} {row['size_bytes'] / 2**20:7.1f} MiB  "
                  f"speedup {speed_text}  GFLOPs {report['compressed_model']['flops'] / 1e9:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", nargs="+", default=["ablation", "reference", "rules", "speed"])
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--rules", nargs="+", choices=["cost", "equal", "latency"], help="rules part: only these ranks")
    args = parser.parse_args()
    print(summary_line(describe_environment(threads=default_threads())))
    base = load_model(name="vitopt/swin-cifar10")
    loader = evaluation_loader(path=DATA / "cifar10-test.tar", spec=base.spec, limit=args.eval_limit)
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts:
            {"ablation": lambda: ablation(loader, base), "reference": lambda: reference(loader, base, Path(tmp)),
             "rules": lambda: rules(loader, base, Path(tmp), args.rules),
             "speed": lambda: speed(Path(tmp))}[part]()  # fmt: skip


if __name__ == "__main__":
    main()
