"""Training images decoded once into a uint8 tensor in memory, augmented per batch in torch.

Why not a DataLoader over JPEGs: on a 2-core machine, decoding 50,000 JPEGs every epoch
costs as much as training a small ViT; decoding once (and caching the tensor on disk) leaves
the cores to the model. Augmentation randomness comes from a generator seeded by
(seed, epoch, step), so a run resumed at any step sees exactly the batches it would have.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitopt.data import map_classes, open_images
from vitopt.errors import DataError
from vitopt.spec import ModelSpec

MAX_BYTES = 6 * 2**30  # beyond this the in-memory path would not fit a 24 GB machine comfortably
CACHE_DIR = Path(os.environ.get("VITOPT_CACHE", Path.home() / ".cache" / "vitopt")) / "tensors"


@dataclass
class TensorImages:
    images: torch.Tensor  # uint8 [N, 3, S, S], S >= input size
    targets: torch.Tensor  # int64 [N], model output index, -1 when unlabelled

    def __len__(self) -> int:
        return len(self.targets)


def stored_size(spec: ModelSpec) -> int:
    """Square side stored: the input size, enlarged by crop_pct so random crops have room."""
    return math.ceil(max(spec.input_size[1:]) / min(spec.crop_pct, 1.0))


def load_tensor_images(*, path: str | Path, spec: ModelSpec, cache: bool = True) -> TensorImages:
    images = open_images(path=path)
    side = stored_size(spec)
    if len(images) * 3 * side * side > MAX_BYTES:
        raise DataError(f"{len(images)} images at {side}px do not fit the in-memory trainer",
                        hint="train at a smaller input size or on a subset")  # fmt: skip
    cache_file = CACHE_DIR / f"{_fingerprint(images, side, spec)}.pt"
    if cache and cache_file.is_file():
        data = torch.load(cache_file, weights_only=True)
        return TensorImages(images=data["images"], targets=data["targets"])
    loaded = _decode_all(images, side=side, spec=spec)
    if cache:
        _save_atomic({"images": loaded.images, "targets": loaded.targets}, cache_file)
    return loaded


def _decode_all(images, *, side: int, spec: ModelSpec) -> TensorImages:
    to_model = map_classes(classes=images.classes, spec=spec) if images.classes else None
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        arrays = list(pool.map(lambda i: _square(images.load(i), side), range(len(images))))
    targets = [images.target(i) for i in range(len(images))]
    mapped = [-1 if t is None or to_model is None else to_model[t] for t in targets]
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return TensorImages(images=stacked, targets=torch.tensor(mapped, dtype=torch.int64))


def _square(image: Image.Image, side: int) -> np.ndarray:
    """Resize the short side to ``side`` and centre-crop a square."""
    w, h = image.size
    scale = side / min(w, h)
    if (w, h) != (side, side):
        image = image.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BICUBIC)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)), dtype=np.uint8)


def _fingerprint(images, side: int, spec: ModelSpec) -> str:
    """Changes when any image changes: a tar by its own size and mtime, a folder file by file."""
    digest = hashlib.sha256(f"{images.source.resolve()}|{side}|{spec.labels}|{spec.num_classes}|v2".encode())
    files = [images.source] if images.source.is_file() else [images.source / k for k in images.keys]
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def make_batch(data: TensorImages, indices: list[int], *, spec: ModelSpec, train: bool, padding: int | None,
               hflip: bool, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Crop (random when training, centre otherwise), flip, scale to [0,1] and normalise."""
    raw = data.images[indices]
    size = spec.input_size[1]
    if train:
        raw = _random_crop(raw, size=size, padding=padding, generator=generator)
        if hflip:
            flip = torch.rand(len(raw), generator=generator) < 0.5
            raw[flip] = raw[flip].flip(-1)
    else:
        offset = (raw.shape[-1] - size) // 2
        raw = raw[..., offset : offset + size, offset : offset + size]
    x = raw.float().div_(255)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return (x - mean) / std, data.targets[indices]


def _random_crop(raw: torch.Tensor, *, size: int, padding: int | None, generator) -> torch.Tensor:
    if raw.shape[-1] == size:  # stored at input size: the classic pad-and-crop
        pad = size // 8 if padding is None else padding
        raw = F.pad(raw, (pad, pad, pad, pad), mode="reflect") if pad else raw
    room = raw.shape[-1] - size
    ys = torch.randint(0, room + 1, (len(raw),), generator=generator).tolist()
    xs = torch.randint(0, room + 1, (len(raw),), generator=generator).tolist()
    return torch.stack([img[:, y : y + size, x : x + size] for img, y, x in zip(raw, ys, xs, strict=True)])
