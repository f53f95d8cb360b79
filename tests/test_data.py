"""vitopt.data on real images: the shared CIFAR-10 and ImageNet tars and the packaged calib set."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from vitopt.data import (
    ImageDataset,
    default_calibration_path,
    eval_transform,
    labelled_dataset,
    load_batch,
    map_classes,
    open_images,
    spread_indices,
)
from vitopt.errors import DataError
from vitopt.spec import ModelSpec

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR = SHARED / "cifar10-test.tar"
IMAGENET = SHARED / "imagenet-samples-256.tar"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")
CIFAR_SPEC = ModelSpec("cifar", input_size=(3, 32, 32), mean=(0.4914, 0.4822, 0.4465),
                       std=(0.2470, 0.2435, 0.2616), num_classes=10, crop_pct=1.0)
IMAGENET_SPEC = ModelSpec("vit_imagenet")

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared test data not found at {SHARED}")


def _extract(tar_path: Path, names: list[str], dest: Path) -> None:
    """Copy a few tar members into a directory, keeping their file names."""
    with tarfile.open(tar_path) as tar:
        for name in names:
            (dest / Path(name).name).write_bytes(tar.extractfile(name).read())


@pytest.fixture(scope="module")
def cifar():
    return open_images(path=CIFAR)


@needs_shared
def test_cifar_tar_is_an_image_folder(cifar):
    assert len(cifar) == 5000
    assert cifar.classes == CIFAR_CLASSES
    assert cifar.name == "cifar10-test"
    assert cifar.target(0) == 0 and cifar.target(4999) == 9
    image = cifar.load(1234)
    assert image.mode == "RGB" and image.size == (32, 32)


@needs_shared
def test_tar_set_pickles_into_dataloader_workers(cifar):
    copy = pickle.loads(pickle.dumps(cifar))
    assert copy.load(42).tobytes() == cifar.load(42).tobytes()
    dataset = Subset(ImageDataset(cifar, eval_transform(spec=CIFAR_SPEC)), range(0, 5000, 500))
    batches = list(DataLoader(dataset, batch_size=5, num_workers=2))
    assert torch.cat([b[1] for b in batches]).tolist() == list(range(10))
    assert batches[0][0].shape == (5, 3, 32, 32)


@needs_shared
def test_flat_tar_is_unlabelled():
    images = open_images(path=IMAGENET)
    assert len(images) == 800 and images.classes == ()
    assert images.target(0) is None
    with pytest.raises(DataError, match="evaluation needs labelled images"):
        labelled_dataset(path=IMAGENET, spec=IMAGENET_SPEC)


@needs_shared
def test_directory_image_folder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        _extract(CIFAR, [f"test/{cls}/{i:04d}.jpg" for i in range(3)], tmp_path / cls)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "._0000.jpg").write_bytes(b"macOS resource fork, not an image")
    images = open_images(path=tmp_path)
    assert images.classes == ("cat", "dog") and len(images) == 6
    assert [images.target(i) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    dataset = labelled_dataset(path=tmp_path, spec=CIFAR_SPEC)
    tensor, target = dataset[4]
    assert tensor.shape == (3, 32, 32) and target == 1


@needs_shared
def test_flat_directory_is_unlabelled(tmp_path):
    _extract(IMAGENET, ["imagenet-samples/n01440764_tench.JPEG"], tmp_path)
    images = open_images(path=tmp_path)
    assert len(images) == 1 and images.classes == ()
    dataset = ImageDataset(images, eval_transform(spec=IMAGENET_SPEC))
    assert dataset[0][1] == -1
    with pytest.raises(DataError, match="evaluation needs labelled images"):
        labelled_dataset(path=tmp_path, spec=IMAGENET_SPEC)


def _bad_path(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / kind
    if kind == "x.tar":
        path.write_bytes(os.urandom(4096))
    elif kind == "notes.txt":
        path.write_text("hello")
    elif kind == "empty":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "does not exist"), ("x.tar", "corrupt"), ("notes.txt", "not a tar archive"),
     ("empty", "no images found")],
)
def test_bad_paths_raise_data_error_with_hint(tmp_path, kind, message):
    with pytest.raises(DataError, match=message) as info:
        open_images(path=_bad_path(kind, tmp_path))
    assert info.value.hint


def test_default_calibration_set_is_packaged_real_images():
    assert default_calibration_path().parent.parent.name == "vitopt"
    images = open_images(path=default_calibration_path())
    assert 200 <= len(images) <= 400 and images.classes == ()
    assert min(images.load(0).size) == 160


def test_load_batch_default_calibration_set():
    batch = load_batch(spec=IMAGENET_SPEC)
    assert batch.shape == (32, 3, 224, 224) and batch.dtype == torch.float32
    assert abs(batch.mean().item()) < 0.5 and 0.5 < batch.std().item() < 2.0
    assert batch[0].std().item() > 0.1 and not torch.equal(batch[0], batch[1])
    assert torch.equal(batch, load_batch(spec=IMAGENET_SPEC))
    assert not torch.equal(batch, load_batch(spec=IMAGENET_SPEC, seed=1))


@needs_shared
def test_load_batch_tiny_inputs_from_tar():
    batch = load_batch(spec=CIFAR_SPEC, path=CIFAR, n=16)
    assert batch.shape == (16, 3, 32, 32)
    assert abs(batch.mean().item()) < 0.5 and batch.std().item() > 0.5
    assert load_batch(spec=CIFAR_SPEC, path=IMAGENET, n=5000).shape[0] == 800


def test_spread_indices_mix_the_sorted_set():
    assert spread_indices(total=10, n=5) == [0, 2, 4, 6, 8]
    assert spread_indices(total=10, n=5, seed=1) == [1, 3, 5, 7, 9]
    assert spread_indices(total=3, n=8) == [0, 1, 2]


@needs_shared
def test_labels_map_to_model_outputs_by_name():
    shuffled = tuple(reversed(CIFAR_CLASSES[:5])) + CIFAR_CLASSES[5:]
    spec = CIFAR_SPEC.with_overrides(labels=shuffled)
    dataset = labelled_dataset(path=CIFAR, spec=spec)
    for i in (0, 1200, 4999):
        name = CIFAR_CLASSES[dataset.images.target(i)]
        assert dataset[i][1] == shuffled.index(name)
    assert dataset[0][1] == 4  # airplane is output 4 of this model


def test_unknown_names_map_by_position_when_they_fit():
    named = CIFAR_SPEC.with_overrides(labels=CIFAR_CLASSES)
    assert map_classes(classes=("n01", "n02"), spec=named) == (0, 1)
    with pytest.raises(DataError, match="11 classes but the model has 10 outputs"):
        map_classes(classes=tuple(f"c{i}" for i in range(11)), spec=CIFAR_SPEC)
