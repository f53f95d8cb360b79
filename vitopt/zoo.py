"""Models vitopt knows by a ``vitopt/...`` name: reference models and tiny test models.

Tiny models are registered like real ones (as timm registers ``test_vit``), so tests and
smoke runs go through exactly the loading path a user's model takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitopt.errors import UnknownModelError
from vitopt.registry import Registry

CIFAR10_LABELS = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
WEIGHTS_DIR = Path(__file__).resolve().parent / "zoo_weights"


@dataclass(frozen=True)
class ZooEntry:
    """A timm architecture with fixed kwargs, its input contract and (maybe) trained weights."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # file name under WEIGHTS_DIR, once trained
    summary: str = ""

    def weights_path(self) -> Path | None:
        if self.weights is None:
            return None
        path = WEIGHTS_DIR / self.weights
        return path if path.is_file() else None


ZOO: Registry[ZooEntry] = Registry("vitopt model", error=UnknownModelError)

_CIFAR_SPEC = {
    "input_size": (3, 32, 32), "mean": CIFAR10_MEAN, "std": CIFAR10_STD,
    "num_classes": 10, "labels": CIFAR10_LABELS, "crop_pct": 1.0, "interpolation": "bilinear",
}  # fmt: skip

ZOO.add("vitopt/vit-cifar10", ZooEntry(
    arch="vit_tiny_patch16_224",
    kwargs={"img_size": 32, "patch_size": 4, "depth": 6, "num_classes": 10},
    spec=_CIFAR_SPEC, weights="vit-cifar10.safetensors",
    summary="plain ViT, 6 blocks, 3 heads, width 192, patch 4, CIFAR-10 32x32",
))  # fmt: skip
ZOO.add("vitopt/swin-cifar10", ZooEntry(
    arch="swin_tiny_patch4_window7_224",
    kwargs={"img_size": 32, "patch_size": 2, "window_size": 4, "embed_dim": 64, "depths": (2, 2, 2),
            "num_heads": (2, 4, 8), "num_classes": 10},
    spec=_CIFAR_SPEC, weights="swin-cifar10.safetensors",
    summary="hierarchical Swin, 3 stages (2-2-2 blocks), width 64-128-256, window 4, CIFAR-10 32x32",
))  # fmt: skip
ZOO.add("vitopt/repvit-cifar10", ZooEntry(
    arch="repvit_m0_9", kwargs={"num_classes": 10},
    spec={**_CIFAR_SPEC, "input_size": (3, 64, 64)}, weights="repvit-cifar10.safetensors",
    summary="RepViT-M0.9 with its multi-branch training blocks; CIFAR-10 upscaled to 64x64 (32x downsampling)",
))  # fmt: skip
ZOO.add("vitopt/tiny-vit", ZooEntry(
    arch="vit_tiny_patch16_224",
    kwargs={"img_size": 64, "patch_size": 16, "depth": 2, "embed_dim": 48, "num_heads": 3},
    spec={"input_size": (3, 64, 64)}, summary="tiny ViT for tests and smoke runs",
))  # fmt: skip
ZOO.add("vitopt/tiny-deit", ZooEntry(
    arch="deit_tiny_distilled_patch16_224",
    kwargs={"img_size": 64, "patch_size": 16, "depth": 2, "embed_dim": 48, "num_heads": 3},
    spec={"input_size": (3, 64, 64)}, summary="tiny distilled DeiT (two heads) for tests",
))  # fmt: skip

DEFAULT_MODEL = "vitopt/vit-cifar10"


def zoo_entry(name: str) -> ZooEntry:
    return ZOO.get(name)
