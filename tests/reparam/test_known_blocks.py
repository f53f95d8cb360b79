"""Blocks that fold themselves: the protocol, timm's three method names, and the safety net around them."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from tests.reparam import blocks
from tests.reparam.conftest import TINY, batch_norms, randomize_bn, real_images
from vitopt.reparam import Reparameterizable, reparameterize
from vitopt.reparam.known_blocks import NativeFolder, call_native, native_method

X = torch.randn(2, 8, 10, 10)


class Fuses(blocks.Untraceable):
    def fuse(self):
        return blocks.UntraceableReparameterizable.reparameterize(self)


class SwitchesToDeploy(blocks.Untraceable):
    def switch_to_deploy(self):
        self.conv = blocks.UntraceableReparameterizable.reparameterize(self)
        self.bn = nn.Identity()


class BrokenFuse(blocks.Untraceable):
    def fuse(self):
        return self.conv  # forgets the BatchNorm


class RaisingFuse(blocks.Untraceable):
    def fuse(self):
        raise RuntimeError("cannot fuse")


def test_one_protocol_and_timms_three_names():
    assert isinstance(blocks.UntraceableReparameterizable(), Reparameterizable)
    assert not isinstance(blocks.Untraceable(), Reparameterizable)
    assert native_method(Fuses()) == "fuse" and native_method(SwitchesToDeploy()) == "switch_to_deploy"
    assert native_method(blocks.UntraceableReparameterizable()) == "reparameterize"
    assert native_method(nn.Conv2d(1, 1, 1)) is None


@pytest.mark.parametrize("cls", [Fuses, SwitchesToDeploy, blocks.UntraceableReparameterizable])
def test_each_method_style_gives_an_equivalent_block(cls):
    block = randomize_bn(cls()).eval()
    with torch.no_grad():
        expected = block(X)
        folded = call_native(block, native_method(block))
        torch.testing.assert_close(folded(X), expected, rtol=1e-5, atol=1e-5)
    assert not batch_norms(folded)


@pytest.mark.parametrize(("cls", "reason"), [(BrokenFuse, "changed the block's output"), (RaisingFuse, "failed")])
def test_a_wrong_or_failing_native_fold_is_undone(cls, reason):
    model = randomize_bn(nn.Sequential(cls())).eval()
    folder = NativeFolder(select=lambda *_: True, rtol=1e-4, atol=1e-4)
    folded = folder.run(model, X)
    assert isinstance(folded[0], cls) and len(batch_norms(folded)) == 1
    assert reason in folder.record.refused["0"]


def test_native_strategy_matches_timms_reparameterize_model():
    factory, size = TINY["repvit"]
    model, images = randomize_bn(factory()).eval(), real_images(size)
    ours = reparameterize(model, images=images, strategy="native")
    theirs = timm.utils.reparameterize_model(model)
    with torch.no_grad():
        torch.testing.assert_close(ours.module(images), theirs(images), rtol=1e-5, atol=1e-5)
    mixers = sum(type(m).__name__ == "RepVggDw" for m in model.modules())
    assert ours.details["native"]["RepVggDw.fuse"] == mixers and ours.details["folds"] == {}
