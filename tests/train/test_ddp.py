"""DDP on CPU (gloo): two ranks under torchrun train one model; only rank 0 writes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.train.conftest import REPO, assert_same_tensors, free_port, read_safetensors, subprocess_env
from vitopt.train.progress import read_metrics

pytestmark = pytest.mark.slow


def _torchrun(*args, cache, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *map(str, args)]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=subprocess_env(cache), capture_output=True, text=True, timeout=timeout)


def test_two_ranks_train_one_model(cifar_dir, tmp_path):
    result = _torchrun(REPO / "tests" / "fixtures" / "ddp_fit.py", cifar_dir, tmp_path, 4, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # they started from different random weights, so DDP's broadcast is what made them equal
    assert ranks[0]["before"] != ranks[1]["before"]
    assert_same_tensors(ranks[0]["state"], ranks[1]["state"])
    assert ranks[0]["after"] == ranks[1]["after"]
    assert ranks[0]["after"] < ranks[0]["before"] - 0.05, (ranks[0]["before"], ranks[0]["after"])

    run = tmp_path / "run"
    assert_same_tensors(ranks[0]["state"], read_safetensors(run / "model.safetensors"))
    records = read_metrics(run / "metrics.jsonl")  # written by rank 0 alone
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    train = records[1:]
    assert train[-1]["train_loss"] < train[0]["train_loss"]
    # the global batch of 32 is split 16 + 16, and each epoch's metrics count both ranks' images
    assert all(r["steps"] == 5 for r in train)
    assert all(r["train_top1"] * 160 == pytest.approx(round(r["train_top1"] * 160)) for r in train)
    assert not list(run.glob(".*tmp*"))


def test_documented_torchrun_distill_command(cifar_dir, tmp_path):
    """torchrun --nproc_per_node 2 -m vitopt.cli distill STUDENT --teacher TEACHER ..., as the docs show."""
    out = tmp_path / "out"
    result = _torchrun("-m", "vitopt.cli", "distill", "vitopt/tiny-vit", "--model-arg", "embed_dim=24",
                       "--teacher", "vitopt/tiny-vit", "--data", cifar_dir, "--epochs", "1", "--batch-size", "32",
                       "--out", out, cache=tmp_path / "cache", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "model.safetensors"]
    records = read_metrics(out / "metrics.jsonl")
    assert [(r["epoch"], r["phase"]) for r in records] == [(0, "initial"), (1, "train")]  # one writer: rank 0
    assert records[0]["train_slice_n_images"] == 160 and "train_agreement" in records[1]
    weights = read_safetensors(out / "model.safetensors")
    assert weights["cls_token"].shape[-1] == 24
    assert result.stdout.count("trained 1 epochs") == 1, result.stdout  # rank 0 prints the summary
