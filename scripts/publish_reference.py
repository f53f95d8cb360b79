"""Publish a trained reference model into the zoo: fp16 safetensors plus a model card.

Usage: .venv/bin/python scripts/publish_reference.py vit-cifar10 [--run DIR]
Reads the run written by scripts/train_reference.py, stores the weights in fp16 under
vitopt/zoo_weights/, evaluates the stored weights (upcast to fp32, as users load them) on the
whole CIFAR-10 test split and on the fixed slice the tests re-check, and writes the card.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from vitopt.environment import describe_environment
from vitopt.evaluate import Predictor, evaluate, torch_predict
from vitopt.flops import model_cost
from vitopt.models import load_model
from vitopt.train.progress import read_metrics
from vitopt.zoo import WEIGHTS_DIR, ZOO

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLICE = 1000  # the evenly spaced slice tests/test_reference_models.py evaluates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--run", type=Path, default=None)
    args = parser.parse_args()
    run = args.run or Path.home() / ".cache" / "vitopt" / "runs" / args.name
    zoo_name = f"vitopt/{args.name}"
    weights = WEIGHTS_DIR / ZOO.get(zoo_name).weights
    WEIGHTS_DIR.mkdir(exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in load_file(run / "model.safetensors").items()}, str(weights))
    card = build_card(zoo_name, run=run)
    weights.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    weights.with_suffix(".md").write_text(render_card(card))
    print(json.dumps(card["accuracy"], indent=2))


def build_card(zoo_name: str, *, run: Path) -> dict:
    model = load_model(name=zoo_name)  # now loads the fp16 weights just written
    assert model.weights == "zoo", model.weights
    predictor = Predictor(torch_predict(model.module), model.spec, zoo_name)
    test = SHARED / "cifar10-test.tar"
    metrics = [m for m in read_metrics(run / "metrics.jsonl") if m.get("phase") == "train"]
    entry = ZOO.get(zoo_name)
    return {
        "name": zoo_name, "architecture": entry.arch, "kwargs": entry.kwargs, "summary": entry.summary,
        "input_size": list(model.spec.input_size),
        **model_cost(model.module, input_size=model.spec.input_size).to_dict(),
        "weights_dtype": "float16", "train_data": "CIFAR-10 train split (50,000 images)",
        "training_command": f".venv/bin/python scripts/train_reference.py {zoo_name.split('/')[1]}",
        "config": json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else None,
        "epochs": len(metrics), "train_wall_seconds": round(sum(m["seconds"] for m in metrics), 1),
        "curve": [{k: m.get(k) for k in ("epoch", "train_loss", "val_top1")} for m in metrics],
        "accuracy": {
            "test": evaluate(predictor=predictor, data=test),
            f"test_slice_{SLICE}": evaluate(predictor=predictor, data=test, limit=SLICE),
        },
        "published": dt.date.today().isoformat(), "machine": describe_environment()["cpu_model"],
    }  # fmt: skip


def render_card(card: dict) -> str:
    acc = card["accuracy"]["test"]
    lines = [
        f"# {card['name']}", "", card["summary"], "",
        f"- architecture: timm `{card['architecture']}` with `{card['kwargs']}`",
        f"- input: {card['input_size']}; {card['params'] / 1e6:.2f}M params; "
        f"{card['flops'] / 1e9:.3f} GFLOPs (1 multiply-add = 2 FLOPs)",
        f"- trained on {card['train_data']} with vitopt's trainer: `{card['training_command']}`",
        f"- {card['epochs']} epochs, {card['train_wall_seconds'] / 60:.0f} min of training "
        f"on {card['machine']} (2 cores)",
        f"- **CIFAR-10 test top-1 {acc['top1']:.4f}**, top-5 {acc['top5']:.4f} on {acc['n_images']} images "
        f"(weights stored in fp16, evaluated in fp32)", "",
        "| epoch | train loss | val top-1 (2,000 test images) |", "|---:|---:|---:|",
        *[f"| {c['epoch']} | {c['train_loss']:.4f} | {c['val_top1']:.4f} |" for c in card["curve"]],
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
