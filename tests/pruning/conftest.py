"""Pruning tests: a tiny real ImageFolder (from the trainer's fixtures), isolated tensor and latency
caches, one torch thread (two spinning threads make tiny models far slower on a loaded 2-core box)."""

from __future__ import annotations

import pytest
import torch

from tests.train.conftest import cifar_dir, isolated_cache  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def isolated_latency_cache(tmp_path, monkeypatch):
    import vitopt.pruning.latency as latency

    monkeypatch.setattr(latency, "CACHE_DIR", tmp_path / "latency-cache")
    return tmp_path / "latency-cache"


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
