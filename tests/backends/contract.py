"""The contract every exporter meets, written once and subclassed per backend.

A subclass names its target and the runner that checks its numbers on this machine (the
target's own runtime, or for TensorRT, ONNX Runtime on the prepared ONNX); every family
in ``families.FAMILIES`` must then export and match PyTorch on real images.
"""

from __future__ import annotations

import pytest
import torch

from vitopt.backends.exporter import ExportedArtifact
from vitopt.data import load_batch
from vitopt.formats import FORMATS
from vitopt.verify import check_parity, torch_logits

from .families import family_params, load_family


class ExporterContract:
    target: str
    runner: type  # the runner that executes the artifact here
    n_images = 16

    def export(self, model, tmp_path, *, precision: str = "fp32", **options) -> ExportedArtifact:
        fmt = FORMATS.get(self.target)
        provenance = {"vitopt.recipe": "t"}
        exporter = fmt.exporter_class()(fmt=fmt, precision=precision, options=options, provenance=provenance)
        images = load_batch(spec=model.spec, n=self.n_images)
        return exporter.export(model.module, spec=model.spec, staging=tmp_path, calibration=images)

    def parity(self, model, artifact: ExportedArtifact, *, max_abs_diff: float = 1e-3, min_top1: float = 1.0):
        images = load_batch(spec=model.spec, n=self.n_images)
        return check_parity(
            reference=torch_logits(model.module, images), runner=self.runner(artifact.main, threads=1),
            images=images, max_abs_diff=max_abs_diff, min_top1_agreement=min_top1,
        )  # fmt: skip

    @family_params
    def test_family_exports_and_matches_pytorch_on_real_images(self, family, name, kwargs, size, tmp_path):
        model = load_family(name, kwargs, size)
        artifact = self.export(model, tmp_path)
        parity = self.parity(model, artifact)
        assert parity.passed, (family, parity)
        assert all(f.exists() for f in artifact.files)

    def test_spec_travels_inside_the_artifact(self, tiny_vit, tmp_path):
        runner = self.runner(self.export(tiny_vit, tmp_path).main, threads=1)
        assert runner.spec() == tiny_vit.spec

    def test_any_batch_size_runs(self, tiny_vit, tmp_path):
        runner = self.runner(self.export(tiny_vit, tmp_path).main, threads=1)
        x = load_batch(spec=tiny_vit.spec, n=5)
        assert runner.run_in_chunks(x.numpy()).shape == (5, tiny_vit.spec.num_classes)

    def test_unknown_option_names_the_known_ones(self):
        fmt = FORMATS.get(self.target)
        with pytest.raises(ValueError, match="not_an_option"):
            fmt.exporter_class()(fmt=fmt, precision="fp32", options={"not_an_option": 1})


def logits(model, images: torch.Tensor):
    return torch_logits(model.module, images)
