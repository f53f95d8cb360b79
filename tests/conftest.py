"""Shared fixtures: real data paths, tiny registered models, fast recipes, the CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from vitopt.models import load_model
from vitopt.recipe import parse_recipe

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_TEST = SHARED / "cifar10-test.tar"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared test data not found at {SHARED}")

FAST_BENCH = {"warmup": 2, "min_runs": 5, "min_time_s": 0.05}


def fast_recipe_dict(**changes) -> dict:
    """A baseline recipe with a short benchmark: tests check behaviour, bench/ checks speed."""
    recipe = {"version": 1, "name": "test", "targets": [{"format": "onnx"}], "bench": dict(FAST_BENCH)}
    recipe.update(changes)
    return recipe


@pytest.fixture
def fast_recipe():
    return parse_recipe(fast_recipe_dict())


@pytest.fixture
def fast_recipe_file(tmp_path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(fast_recipe_dict()))
    return path


@pytest.fixture
def tiny_vit():
    # Seeded: random weights leave near-tied logits, and which images tie must not change between runs.
    torch.manual_seed(0)
    return load_model(name="vitopt/tiny-vit")


@pytest.fixture
def cli():
    from vitopt.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke
