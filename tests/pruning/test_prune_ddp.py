"""``torchrun -m vitopt.cli compress``: two gloo ranks prune data-parallel to the same widths (the run
stops if they ever disagree) and rank 0 alone exports, measures and writes the one report."""

from __future__ import annotations

import json

import yaml

from tests.pruning.test_prune_pass import PRUNE
from tests.train.conftest import SMALL, SMALL_ARGS
from tests.train.test_ddp import _torchrun


def test_two_ranks_prune_to_the_same_widths_and_write_one_report(cifar_dir, tmp_path):
    recipe = tmp_path / "prune.yaml"
    recipe.write_text(yaml.safe_dump({
        "version": 1, "name": "ddp-prune", "passes": [{"name": "prune", "options": PRUNE}],
        "targets": [{"format": "onnx"}], "verify": {"n_images": 16},
        "bench": {"warmup": 2, "min_runs": 5, "min_time_s": 0.05},
    }))  # fmt: skip
    out = tmp_path / "out"
    result = _torchrun("-m", "vitopt.cli", "compress", SMALL, *SMALL_ARGS, "--recipe", recipe, "--data", cifar_dir,
                       "--out", out, cache=tmp_path / "cache", timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    details = report["passes"][0]["details"]
    assert details["ranks"] == 2
    assert details["widths_after"] != details["widths_before"]
    assert result.stdout.count("report:") + result.stderr.count("report:") == 1  # rank 0 alone reports
    assert (out / "pytorch" / "model.safetensors").is_file()
