"""vitopt.models.load_model on real tiny models: timm and zoo names, files, factories, spec overrides."""

from __future__ import annotations

import re
import textwrap

import pytest
import timm
import torch

from vitopt.errors import CheckpointError, InputError, UnknownModelError, UnsupportedOptionError
from vitopt.models import load_model
from vitopt.zoo import CIFAR10_LABELS, CIFAR10_MEAN, CIFAR10_STD

FACTORIES = """
    from torch import nn

    def small():
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))

    def feature_map():
        return nn.Conv2d(3, 4, kernel_size=3)

    not_callable = 42
"""


def _logits(module: torch.nn.Module, shape=(2, 3, 64, 64)) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module(x)


@pytest.fixture(scope="module")
def timm_test_vit():
    return load_model(name="test_vit")


@pytest.fixture
def factories(tmp_path) -> str:
    path = tmp_path / "factories.py"
    path.write_text(textwrap.dedent(FACTORIES))
    return str(path)


def test_timm_name_takes_spec_from_pretrained_cfg(timm_test_vit):
    loaded = timm_test_vit
    cfg = timm.get_pretrained_cfg("test_vit")
    assert loaded.spec.input_size == tuple(cfg.input_size)
    assert loaded.spec.mean == tuple(cfg.mean)
    assert loaded.spec.std == tuple(cfg.std)
    assert loaded.spec.num_classes == 1000


def test_timm_imagenet_head_has_wnid_labels(timm_test_vit):
    labels = timm_test_vit.spec.labels
    assert len(labels) == 1000
    assert labels[0] == "n01440764"
    assert all(re.fullmatch(r"n\d{8}", label) for label in labels)


def test_model_without_weights_carries_random_notice(timm_test_vit):
    loaded = timm_test_vit
    assert loaded.weights == "random"
    assert len(loaded.notices) == 1
    assert "RANDOM weights" in loaded.notices[0]
    assert not loaded.module.training


def test_zoo_cifar10_model_has_cifar_spec():
    spec = load_model(name="vitopt/vit-cifar10").spec
    assert spec.input_size == (3, 32, 32)
    assert spec.labels == CIFAR10_LABELS
    assert spec.num_classes == 10
    assert (spec.mean, spec.std) == (CIFAR10_MEAN, CIFAR10_STD)
    assert spec.name == "vitopt/vit-cifar10"


def test_zoo_tiny_model_runs_at_64px(tiny_vit):
    assert tiny_vit.spec.input_size == (3, 64, 64)
    assert _logits(tiny_vit.module).shape == (2, 1000)


def test_unknown_timm_name_suggests_close_names():
    with pytest.raises(UnknownModelError) as info:
        load_model(name="test_vitt")
    assert "did you mean" in info.value.hint
    assert "'test_vit'" in info.value.hint


def test_unknown_zoo_name_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean 'vitopt/tiny-vit'"):
        load_model(name="vitopt/tiny-vt")


def test_full_module_pickle_needs_trust(tiny_vit, tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(tiny_vit.module, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_model(name=str(path))
    loaded = load_model(name=str(path), trust_checkpoint=True)
    assert loaded.weights == "full-module"
    assert loaded.spec.input_size == (3, 64, 64)
    assert torch.equal(_logits(loaded.module), _logits(tiny_vit.module))


def test_state_dict_given_as_model_is_refused(tiny_vit, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(tiny_vit.module.state_dict(), path)
    with pytest.raises(CheckpointError, match="holds weights, not a model"):
        load_model(name=str(path))


def test_missing_model_file_is_unknown_model(tmp_path):
    with pytest.raises(UnknownModelError, match="does not exist"):
        load_model(name=str(tmp_path / "gone.pt"))


def test_exported_program_loads_and_matches_outputs(tiny_vit, tmp_path):
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(tiny_vit.module, (x,)), str(path))
    loaded = load_model(name=str(path), spec_overrides={"input_size": (3, 64, 64)})
    assert loaded.weights == "exported-program"
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), tiny_vit.module(x))


def test_exported_program_spec_takes_input_size_from_program(tiny_vit, tmp_path):
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(tiny_vit.module, (torch.randn(1, 3, 64, 64),)), str(path))
    assert load_model(name=str(path)).spec.input_size == (3, 64, 64)


def test_factory_builds_model(factories):
    loaded = load_model(name=f"{factories}:small", spec_overrides={"input_size": (3, 8, 8)})
    assert loaded.weights == "factory"
    assert loaded.spec.num_classes == 5
    assert loaded.spec.name == "small"
    assert loaded.notices == []


@pytest.mark.parametrize("factory", ["missing", "not_callable"])
def test_factory_name_not_defined_is_unknown_model(factories, factory):
    with pytest.raises(UnknownModelError, match=repr(factory)):
        load_model(name=f"{factories}:{factory}")


def test_factory_file_missing_is_unknown_model(tmp_path):
    with pytest.raises(UnknownModelError, match="does not exist"):
        load_model(name=f"{tmp_path / 'nope.py'}:small")


def test_spec_overrides_apply(tiny_vit):
    mean, std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    spec = load_model(name="vitopt/tiny-vit", spec_overrides={"mean": mean, "std": std}).spec
    assert (spec.mean, spec.std) == (mean, std)
    assert spec.input_size == tiny_vit.spec.input_size


def test_input_size_the_vit_rejects_is_unsupported():
    with pytest.raises(UnsupportedOptionError, match=r"rejects input of shape \(1, 3, 65, 65\)"):
        load_model(name="vitopt/tiny-vit", spec_overrides={"input_size": (3, 65, 65)})


def test_input_size_a_fixed_linear_rejects_is_unsupported(factories):
    with pytest.raises(UnsupportedOptionError, match=r"\(1, 3, 224, 224\)"):
        load_model(name=f"{factories}:small")


def test_non_2d_output_is_unsupported(factories):
    with pytest.raises(UnsupportedOptionError, match="classifier logits"):
        load_model(name=f"{factories}:feature_map", spec_overrides={"input_size": (3, 8, 8)})


def test_labels_override_fits_probed_class_count(factories):
    labels = ("a", "b", "c", "d", "e")
    spec = load_model(
        name=f"{factories}:small", spec_overrides={"input_size": (3, 8, 8), "labels": labels}
    ).spec
    assert spec.labels == labels


@pytest.mark.parametrize(
    "overrides",
    [{"input_size": (1, 64, 64)}, {"labels": ("cat", "dog")}],
    ids=["channels-vs-mean", "labels-vs-classes"],
)
def test_inconsistent_spec_overrides_are_input_errors(overrides):
    with pytest.raises(InputError):
        load_model(name="vitopt/tiny-vit", spec_overrides=overrides)
