"""Train (or resume) vitopt's reference models on CIFAR-10 with vitopt's own trainer.

Usage: .venv/bin/python scripts/train_reference.py vit-cifar10 [--out DIR] [--resume]
Then:  .venv/bin/python scripts/publish_reference.py vit-cifar10 --run DIR
The settings below are the whole recipe; the model card records them with the wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vitopt.environment import native_bf16
from vitopt.models import load_model
from vitopt.train import TrainConfig, fit

# bf16 autocast only where the CPU has it in hardware: elsewhere it is emulated and ~14x slower.
BF16 = native_bf16()
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REFERENCES = {
    "vit-cifar10": TrainConfig(epochs=14, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=1,
                               label_smoothing=0.1, bf16=BF16, eval_limit=2000),
    "swin-cifar10": TrainConfig(epochs=12, batch_size=128, lr=1e-3, weight_decay=0.05, warmup_epochs=1,
                                label_smoothing=0.1, bf16=BF16, eval_limit=2000),
    "repvit-cifar10": TrainConfig(epochs=12, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=1,
                                  label_smoothing=0.1, bf16=BF16, eval_limit=2000),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(REFERENCES))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    out = args.out or Path.home() / ".cache" / "vitopt" / "runs" / args.name
    config = REFERENCES[args.name]
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.model_dump_json(indent=2))
    start = time.time()
    summary = fit(model=load_model(name=f"vitopt/{args.name}"), data=SHARED / "cifar10-train.tar", out_dir=out,
                  config=config, val_data=SHARED / "cifar10-test.tar", resume=args.resume)  # fmt: skip
    wall = out / "wall_seconds.json"
    previous = json.loads(wall.read_text())["seconds"] if args.resume and wall.is_file() else 0.0
    wall.write_text(json.dumps({"seconds": previous + time.time() - start}))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
