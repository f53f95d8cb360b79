"""Fixtures for the trainer's tests: a tiny real ImageFolder, an isolated tensor cache, one thread.

Every test here points the decoded-tensor cache at its own tmp dir (in-process and, through
``VITOPT_CACHE``, in subprocesses), so nothing touches ``~/.cache/vitopt``. Torch runs on one
thread: on a loaded 2-core machine two spinning OpenMP threads make tiny models ~50x slower.
"""

from __future__ import annotations

import os
import socket
import tarfile
from pathlib import Path

import pytest
import torch

from tests.conftest import CIFAR_TEST

REPO = Path(__file__).resolve().parents[2]
PER_CLASS = 16  # 160 images, 10 classes
# a plain ViT at CIFAR's 32x32 (patch 4, CIFAR labels and mean/std), one narrow block: ~40k parameters
SMALL = "vitopt/vit-cifar10"
SMALL_KWARGS = {"depth": 1, "embed_dim": 48, "num_heads": 3}
SMALL_ARGS = [a for k, v in SMALL_KWARGS.items() for a in ("--model-arg", f"{k}={v}")]


def _extract_subset(root: Path, per_class: int) -> Path:
    with tarfile.open(CIFAR_TEST, "r:") as tar:
        for member in tar:
            parts = member.name.split("/")  # test/<class>/<NNNN>.jpg
            if member.isfile() and len(parts) == 3 and int(Path(parts[2]).stem) < per_class:
                (root / parts[1]).mkdir(parents=True, exist_ok=True)
                (root / parts[1] / parts[2]).write_bytes(tar.extractfile(member).read())
    return root


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """An ImageFolder of 160 real CIFAR-10 test images (16 per class)."""
    if not CIFAR_TEST.is_file():
        pytest.skip(f"shared test data not found at {CIFAR_TEST}")
    root = _extract_subset(tmp_path_factory.mktemp("cifar") / "images", PER_CLASS)
    assert sum(1 for _ in root.rglob("*.jpg")) == 10 * PER_CLASS
    return root


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    import vitopt.train.tensor_data as tensor_data

    cache = tmp_path / "vitopt-cache"
    tensors = cache / "tensors"
    monkeypatch.setattr(tensor_data, "CACHE_DIR", tensors)
    monkeypatch.setenv("VITOPT_CACHE", str(cache))
    yield tensors
    # a test calling monkeypatch.undo() would have trained against the user's real cache
    assert tensor_data.CACHE_DIR is tensors, "the tensor cache was un-isolated during the test"


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def subprocess_env(cache: Path) -> dict[str, str]:
    """Environment for a child vitopt: its own cache, one thread, the repo importable."""
    env = dict(os.environ)
    env.update(VITOPT_CACHE=str(cache), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               COLUMNS="200", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))  # fmt: skip
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    diffs = {k: (a[k].float() - b[k].float()).abs().max().item() for k in a if not torch.equal(a[k], b[k])}
    assert not diffs, f"tensors differ (max abs diff per tensor): {diffs}"
