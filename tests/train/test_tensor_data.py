"""Images decoded once into uint8 tensors (cached on disk), then cropped, flipped and normalised per batch."""

from __future__ import annotations

import shutil
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

import vitopt.train.tensor_data as tensor_data
from vitopt.spec import ModelSpec
from vitopt.train.tensor_data import TensorImages, load_tensor_images, make_batch, stored_size
from vitopt.zoo import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD

CIFAR_SPEC = ModelSpec(name="cifar", input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, num_classes=10,
                       labels=CIFAR10_LABELS, crop_pct=1.0)  # fmt: skip


def _spec(size: int, *, crop_pct: float = 1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> ModelSpec:
    return ModelSpec(name="t", input_size=(3, size, size), mean=mean, std=std, num_classes=10, crop_pct=crop_pct)


def _synthetic(n: int = 6, side: int = 32, seed: int = 0) -> TensorImages:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    return TensorImages(images=images, targets=torch.arange(n) % 10)


def _batch(data, spec, *, seed, train=True, padding=None, hflip=True):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return make_batch(data, list(range(len(data))), spec=spec, train=train, padding=padding, hflip=hflip,
                      generator=generator)  # fmt: skip


# --- decoding and the on-disk cache ---------------------------------------------------------------


def test_decodes_to_uint8_nchw_with_targets_by_label(cifar_dir, isolated_cache):
    data = load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC)
    assert data.images.dtype == torch.uint8 and data.images.shape == (160, 3, 32, 32)
    assert data.images.is_contiguous() and len(data) == 160
    assert data.targets.dtype == torch.int64
    # keys are sorted: airplane/0000..0015, automobile/..., so target i // 16 is CIFAR index i // 16
    assert data.targets.tolist() == [i // 16 for i in range(160)]
    # at input size the pixels are the JPEG's own, channels first
    first = np.array(Image.open(cifar_dir / "airplane" / "0000.jpg").convert("RGB"))
    assert torch.equal(data.images[0], torch.from_numpy(first).permute(2, 0, 1))


def test_decodes_larger_for_crop_room(cifar_dir):
    spec = _spec(64, crop_pct=0.875)
    assert stored_size(spec) == 74  # ceil(64 / 0.875)
    data = load_tensor_images(path=cifar_dir, spec=spec, cache=False)
    assert data.images.shape == (160, 3, 74, 74) and data.images.dtype == torch.uint8


def test_tar_and_directory_decode_the_same(cifar_dir, tmp_path):
    archive = tmp_path / "images.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(cifar_dir, arcname="images")
    from_dir = load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC, cache=False)
    from_tar = load_tensor_images(path=archive, spec=CIFAR_SPEC, cache=False)
    assert torch.equal(from_dir.images, from_tar.images) and torch.equal(from_dir.targets, from_tar.targets)


def test_unlabelled_images_get_target_minus_one(cifar_dir, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, src in enumerate(sorted(cifar_dir.rglob("*.jpg"))[:5]):
        shutil.copy(src, flat / f"{i}.jpg")
    data = load_tensor_images(path=flat, spec=CIFAR_SPEC, cache=False)
    assert data.targets.tolist() == [-1] * 5


def test_cache_hit_returns_equal_tensors_without_decoding(cifar_dir, isolated_cache, monkeypatch):
    first = load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC)
    files = list(isolated_cache.glob("*.pt"))
    assert len(files) == 1, "one cache file per (data, stored size)"

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds these images")

    monkeypatch.setattr(tensor_data, "_decode_all", no_decoding)
    again = load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC)
    assert torch.equal(first.images, again.images) and torch.equal(first.targets, again.targets)
    assert list(isolated_cache.glob("*")) == files, "no temp files left behind"


def test_cache_false_neither_reads_nor_writes(cifar_dir, isolated_cache):
    load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC, cache=False)
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_cache_key_changes_with_the_spec_size(cifar_dir, isolated_cache):
    small = load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC)
    large = load_tensor_images(path=cifar_dir, spec=_spec(48))
    assert small.images.shape[-1] == 32 and large.images.shape[-1] == 48
    assert len(list(isolated_cache.glob("*.pt"))) == 2
    # and each size is served from its own entry
    assert load_tensor_images(path=cifar_dir, spec=_spec(48)).images.shape[-1] == 48
    assert load_tensor_images(path=cifar_dir, spec=CIFAR_SPEC).images.shape[-1] == 32


def test_cache_sees_a_changed_image_inside_a_class_folder(cifar_dir, tmp_path):
    data_dir = tmp_path / "images"
    shutil.copytree(cifar_dir, data_dir)
    before = load_tensor_images(path=data_dir, spec=CIFAR_SPEC)
    Image.new("RGB", (32, 32), (255, 0, 0)).save(data_dir / "airplane" / "0000.jpg")  # a red square
    after = load_tensor_images(path=data_dir, spec=CIFAR_SPEC)
    assert not torch.equal(before.images[0], after.images[0])
    assert torch.equal(after.images, load_tensor_images(path=data_dir, spec=CIFAR_SPEC, cache=False).images)


# --- batches: augmentation, crops, normalisation --------------------------------------------------


@pytest.mark.parametrize("stored", [32, 40], ids=["pad-and-crop", "crop-from-larger"])
def test_make_batch_is_deterministic_per_generator_seed(stored):
    data = _synthetic(side=stored)
    original = data.images.clone()
    x1, y1 = _batch(data, _spec(32), seed=7)
    x2, y2 = _batch(data, _spec(32), seed=7)
    x3, _ = _batch(data, _spec(32), seed=8)
    assert x1.shape == (6, 3, 32, 32) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert torch.equal(data.images, original), "augmentation must not modify the stored images"


def test_train_batch_without_room_padding_or_flip_is_the_image():
    data = _synthetic()
    x, _ = _batch(data, _spec(32), seed=1, padding=0, hflip=False)
    assert torch.equal(x, data.images.float() / 255)


def test_flip_only_mirrors_whole_images():
    data = _synthetic(n=16)
    x, _ = _batch(data, _spec(32), seed=3, padding=0, hflip=True)
    plain = data.images.float() / 255
    flipped = [bool(torch.equal(x[i], plain[i].flip(-1))) for i in range(16)]
    assert all(flipped[i] or torch.equal(x[i], plain[i]) for i in range(16))
    assert 0 < sum(flipped) < 16


def test_random_crops_come_from_the_padded_image():
    """Stored at input size, crops are windows of the reflect-padded image (pad = size / 8 = 4)."""
    data = _synthetic(n=8)
    x, _ = _batch(data, _spec(32), seed=5, hflip=False)
    padded = torch.nn.functional.pad(data.images, (4, 4, 4, 4), mode="reflect").float() / 255
    offsets = set()
    for i in range(8):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if torch.equal(x[i], padded[i, :, dy : dy + 32, dx : dx + 32])]  # fmt: skip
        assert hits, f"image {i} is not a 32x32 window of its padded original"
        offsets.update(hits)
    assert len(offsets) > 1, "crops should not all sit at the same offset"


def test_eval_crop_is_centred():
    data = _synthetic(side=40)
    x, y = _batch(data, _spec(32), seed=None, train=False)
    assert torch.equal(x, data.images[..., 4:36, 4:36].float() / 255)
    assert torch.equal(y, data.targets)
    odd, _ = _batch(_synthetic(side=37), _spec(32), seed=None, train=False)
    assert torch.equal(odd, _synthetic(side=37).images[..., 2:34, 2:34].float() / 255)  # (37 - 32) // 2


def test_normalisation_uses_the_spec_mean_and_std():
    data = _synthetic()
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    x, _ = _batch(data, _spec(32, mean=mean, std=std), seed=None, train=False)
    expected = (data.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    for c in range(3):  # per channel: un-normalising gives back the pixels
        torch.testing.assert_close(x[:, c] * std[c] + mean[c], data.images[:, c].float() / 255, rtol=0, atol=1e-6)


def test_batch_selects_the_given_indices():
    data = _synthetic(n=10)
    x, y = make_batch(data, [7, 2], spec=_spec(32), train=False, padding=None, hflip=False, generator=None)
    assert y.tolist() == [7, 2]
    assert torch.equal(x, data.images[[7, 2]].float() / 255)
