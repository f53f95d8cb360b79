"""Loading weights into real tiny timm models: safetensors, state-dict pickles, trust, bad files."""

from __future__ import annotations

import argparse
import random

import pytest
import timm
import torch
from safetensors.torch import save_file

from vitopt.checkpoints import read_checkpoint, state_dict_of
from vitopt.errors import CheckpointError
from vitopt.models import load_model

TINY = "vitopt/tiny-vit"


def _logits(module: torch.nn.Module, size: int = 64) -> torch.Tensor:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module(x)


@pytest.fixture
def state(tiny_vit) -> dict[str, torch.Tensor]:
    return tiny_vit.module.state_dict()


def test_safetensors_checkpoint_round_trips(tiny_vit, state, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    loaded = load_model(name=TINY, checkpoint=path)
    assert torch.equal(_logits(loaded.module), _logits(tiny_vit.module))
    assert loaded.weights == "checkpoint"
    assert loaded.notices == []


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"model_ema": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "model+epoch", "model_ema", "ddp", "state_dict+ddp"],
)
def test_pth_state_dict_loads_unwrapped(tiny_vit, state, tmp_path, wrap):
    path = tmp_path / "w.pth"
    torch.save(wrap(state), path)
    loaded = load_model(name=TINY, checkpoint=path)
    assert torch.equal(_logits(loaded.module), _logits(tiny_vit.module))
    assert loaded.weights == "checkpoint"


def test_checkpoint_with_other_class_count_rebuilds_the_head(tmp_path):
    finetuned = timm.create_model("test_vit", num_classes=7).eval()
    path = tmp_path / "seven.pth"
    torch.save(finetuned.state_dict(), path)
    loaded = load_model(name="test_vit", checkpoint=path)
    out = _logits(loaded.module, size=160)
    assert out.shape == (2, 7)
    assert torch.equal(out, _logits(finetuned, size=160))
    assert loaded.spec.num_classes == 7
    assert loaded.spec.labels is None


def test_pickled_objects_beyond_tensors_need_trust(tiny_vit, state, tmp_path):
    path = tmp_path / "trainer.pth"
    torch.save({"model": state, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_model(name=TINY, checkpoint=path)
    loaded = load_model(name=TINY, checkpoint=path, trust_checkpoint=True)
    assert torch.equal(_logits(loaded.module), _logits(tiny_vit.module))


def test_random_bytes_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError):
        load_model(name=TINY, checkpoint=path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(name=TINY, checkpoint=path, trust_checkpoint=True)


def test_corrupt_checkpoint_is_not_blamed_on_trust(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert "corrupt" in str(info.value)
    assert "--trust-checkpoint" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "trust"),
    [
        (b"s" + bytes(64), False),  # SETITEM on an empty stack: IndexError
        (b"h" + bytes(64), False),  # BINGET of an empty memo: KeyError
        (b"\x95" + b"\xff" * 8 + bytes(64), True),  # FRAME of 2**64-1 bytes: OverflowError
    ],
    ids=["index-error", "key-error", "overflow-error"],
)
def test_any_corrupt_pickle_is_a_checkpoint_error(tmp_path, data, trust):
    path = tmp_path / "junk.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        read_checkpoint(path, trust=trust)


def test_truncated_checkpoint_is_corrupt(state, tmp_path):
    full = tmp_path / "full.pth"
    torch.save(state, full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(name=TINY, checkpoint=cut)


def test_corrupt_safetensors_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(random.Random(1).randbytes(4096))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(name=TINY, checkpoint=path)


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(name=TINY, checkpoint=tmp_path / "nope.safetensors")


def test_checkpoint_of_another_architecture_does_not_fit(tmp_path):
    deit = load_model(name="vitopt/tiny-deit")
    path = tmp_path / "deit.safetensors"
    save_file(deit.module.state_dict(), str(path))
    with pytest.raises(CheckpointError, match="does not fit the model") as info:
        load_model(name=TINY, checkpoint=path)
    assert "dist_token" in str(info.value)


def test_state_dict_of_rejects_non_tensor_dicts():
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        state_dict_of({"epoch": 3, "lr": 0.1}, path="x.pth")
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        state_dict_of([torch.zeros(1)], path="x.pth")


def test_state_dict_of_a_module_is_its_state_dict(tiny_vit):
    state = state_dict_of(tiny_vit.module, path="m.pt")
    assert state.keys() == tiny_vit.module.state_dict().keys()
