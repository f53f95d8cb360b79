"""Real images for calibration, evaluation and fidelity checks.

Three layouts are accepted, each as a directory or as an uncompressed ``.tar`` read in place:
an ImageFolder (``root/<class>/<img>``), or a flat folder of unlabelled images. The class of an
image is the name of its parent folder; a set counts as labelled when its images sit in at least
two distinct parent folders, so ``test/<class>/<img>`` in a tar is labelled and
``imagenet-samples/<img>`` is not. Keys are sorted so every run sees the same order.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path, PurePosixPath

import timm.data
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from vitopt.errors import DataError, InputError, one_line
from vitopt.spec import ModelSpec

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
_SKIP_PREFIXES = (".", "__MACOSX")  # hidden files and macOS resource forks (._x.jpg) are not images
_DECODE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


class ImageSet:
    """An ordered, indexable set of images with optional class labels.

    A tar-backed set stores only member names and byte spans and opens the file for each read,
    so it holds no handle: it pickles into DataLoader workers and is safe across threads.
    """

    def __init__(self, *, source: Path, keys: Sequence[str],
                 spans: Sequence[tuple[int, int]] | None = None):
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        self.source = Path(source)
        self.name = self.source.name.removesuffix(".tar")
        self.keys = tuple(keys[i] for i in order)
        self.spans = None if spans is None else tuple(spans[i] for i in order)
        parents = [PurePosixPath(k).parent.name for k in self.keys]
        self.classes: tuple[str, ...] = tuple(sorted(set(parents))) if len(set(parents)) >= 2 else ()
        if "" in self.classes:
            raise DataError(f"{self.source} mixes top-level images with class folders",
                            hint="put every image inside a <class>/ folder, or none of them")
        index = {c: i for i, c in enumerate(self.classes)}
        self._targets = tuple(index.get(p) for p in parents)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"ImageSet({self.name!r}, {len(self)} images, {len(self.classes)} classes)"

    def target(self, i: int) -> int | None:
        """Index into ``classes`` of image ``i``, or None when the set is unlabelled."""
        return self._targets[i]

    def load(self, i: int) -> Image.Image:
        """Image ``i`` decoded as RGB; a broken file names itself instead of failing deep in PIL."""
        try:
            with Image.open(io.BytesIO(self._read(i))) as image:
                return image.convert("RGB")
        except _DECODE_ERRORS as exc:
            raise DataError(f"{self.keys[i]!r} in {self.source} is not a readable image: {_why(exc)}",
                            hint="remove or replace the broken file") from exc

    def readable(self, i: int) -> bool:
        """Whether image ``i`` opens as an image; only its header is read, nothing is decoded."""
        try:
            with Image.open(io.BytesIO(self._read(i))):
                return True
        except _DECODE_ERRORS:
            return False

    def _read(self, i: int) -> bytes:
        if self.spans is None:
            return (self.source / self.keys[i]).read_bytes()
        offset, size = self.spans[i]
        with open(self.source, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise OSError(f"truncated archive: {len(data)} of {size} bytes")
        return data


def _why(exc: BaseException) -> str:
    # PIL names the in-memory buffer (<_io.BytesIO object at 0x...>), not the file: say what it means
    return "no image format recognised" if isinstance(exc, UnidentifiedImageError) else one_line(exc)


def _is_image(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return (PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS
            and not any(p.startswith(_SKIP_PREFIXES) for p in parts))


def _scan_dir(root: Path) -> ImageSet:
    keys = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return ImageSet(source=root, keys=[k for k in keys if _is_image(k)])


def _scan_tar(path: Path) -> ImageSet:
    """Index a tar once (names and byte spans), so later reads seek straight to the bytes."""
    try:
        with tarfile.open(path, "r:") as tar:
            members = [m for m in tar if m.isfile() and _is_image(m.name)]
    except (tarfile.TarError, OSError, EOFError) as exc:
        what = "a corrupt or compressed tar" if path.suffix.lower() == ".tar" else "not a tar archive"
        raise DataError(f"cannot read images from {path}: {what} ({exc})",
                        hint="give a directory of images or an uncompressed .tar; "
                             "decompress .tar.gz files first") from exc
    return ImageSet(source=path, keys=[m.name for m in members],
                    spans=[(m.offset_data, m.size) for m in members])


def open_images(*, path: str | Path) -> ImageSet:
    """Open an ImageFolder, a flat folder of images or a tar of either, failing with one clear line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"image path {path} does not exist", hint="check the path to your images")
    images = _scan_dir(path) if path.is_dir() else _scan_tar(path)
    if not len(images):
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"no images found in {path}", hint=f"expected files ending in {exts}")
    _require_a_readable_image(images)
    return images


def _require_a_readable_image(images: ImageSet) -> None:
    """Refuse a set none of whose files is an image (HTML saved as .jpg, a failed download...) at once,
    before it is judged labelled or not. The first file is checked; the rest only when it is unreadable."""
    if images.readable(0) or any(images.readable(i) for i in range(1, len(images))):
        return
    raise DataError(f"no file in {images.source} is a readable image ({len(images)} named like images, "
                    f"e.g. {images.keys[0]!r})", hint="check that the files really are images (JPEG, PNG...)")


def eval_transform(*, spec: ModelSpec) -> Callable[[Image.Image], torch.Tensor]:
    """The timm evaluation preprocessing (resize, center crop, normalise) the model was trained for."""
    return timm.data.create_transform(input_size=spec.input_size, interpolation=spec.interpolation,
                                      mean=spec.mean, std=spec.std, crop_pct=spec.crop_pct,
                                      is_training=False)


def map_classes(*, classes: Sequence[str], spec: ModelSpec) -> tuple[int, ...]:
    """Model output index of each dataset class: by name when the model's labels cover them all.

    Otherwise dataset class i is taken to be output i, which is right for ImageFolders whose
    sorted folder names follow the model's class order (e.g. ImageNet wnids).
    """
    if spec.labels is not None and set(classes) <= set(spec.labels):
        return tuple(spec.labels.index(c) for c in classes)
    if len(classes) > spec.num_classes:
        raise DataError(f"the images have {len(classes)} classes but the model has "
                        f"{spec.num_classes} outputs",
                        hint="use images of the classes the model was trained on")
    return tuple(range(len(classes)))


class ImageDataset(Dataset):
    """(tensor, target) pairs for a DataLoader; target is a model output index, or -1 if unlabelled.

    ``class_to_model_index`` maps each index into ``images.classes`` to a model output index
    (see :func:`map_classes`); by default class i is output i.
    """

    def __init__(self, images: ImageSet, transform: Callable[[Image.Image], torch.Tensor], *,
                 class_to_model_index: Sequence[int] | Mapping[int, int] | None = None):
        n = len(images.classes)
        mapping = range(n) if class_to_model_index is None else class_to_model_index
        try:
            self.class_to_model_index = tuple(int(mapping[i]) for i in range(n))
        except (IndexError, KeyError) as exc:
            raise InputError(f"class_to_model_index needs a model index for each of {n} classes",
                             hint="see vitopt.data.map_classes") from exc
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        target = self.images.target(i)
        mapped = -1 if target is None else self.class_to_model_index[target]
        return self.transform(self.images.load(i)), mapped


def labelled_dataset(*, path: str | Path, spec: ModelSpec) -> ImageDataset:
    """Images with targets in the model's output space, ready for accuracy evaluation."""
    images = open_images(path=path)
    if not images.classes:
        raise DataError(f"{path} holds unlabelled images; evaluation needs labelled images: "
                        "an ImageFolder directory or tar of one",
                        hint="arrange the images as <root>/<class>/<image>")
    mapping = map_classes(classes=images.classes, spec=spec)
    return ImageDataset(images, eval_transform(spec=spec), class_to_model_index=mapping)


def default_calibration_path() -> Path:
    """The real photographs shipped inside the package (vitopt/calib_data/images)."""
    path = Path(str(resources.files("vitopt").joinpath("calib_data", "images")))
    if not path.is_dir():
        raise DataError(f"the packaged calibration images are missing at {path}",
                        hint="reinstall vitopt, or pass your own images")
    return path


def spread_indices(*, total: int, n: int, seed: int = 0) -> list[int]:
    """n evenly spaced indices of a sorted set (so classes mix); the seed rotates the start."""
    n = min(n, total)
    return sorted({(k * total // n + seed) % total for k in range(n)})


def load_batch(*, spec: ModelSpec, path: str | Path | None = None, n: int = 32,
               seed: int = 0) -> torch.Tensor:
    """A deterministic [n', C, H, W] batch of preprocessed real images, e.g. for calibration."""
    if n < 1:
        raise InputError(f"a batch needs at least one image, got n={n}")
    images = open_images(path=default_calibration_path() if path is None else path)
    transform = eval_transform(spec=spec)
    indices = spread_indices(total=len(images), n=n, seed=seed)
    with ThreadPoolExecutor(max_workers=4) as pool:  # PIL decode/resize release the GIL
        tensors = list(pool.map(lambda i: transform(images.load(i)), indices))
    return torch.stack(tensors)
