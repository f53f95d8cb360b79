"""``vitopt train``, ``distill`` and ``eval`` through the CLI, on tiny models and 160 real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import vitopt.train.tensor_data as tensor_data
from tests.conftest import fast_recipe_dict
from tests.train.conftest import SMALL, SMALL_ARGS, SMALL_KWARGS
from vitopt.models import load_model
from vitopt.train.progress import read_metrics

N_IMAGES = 160
TEACHER_FACTORY = f"{Path(__file__).with_name('cifar_teacher.py')}:small_vit"  # SMALL's architecture
STUDENT_ARGS = ["--model-arg", "depth=1", "--model-arg", "embed_dim=24", "--model-arg", "num_heads=3"]  # half width


def _invoke(*args):
    from vitopt.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def teacher(cifar_dir, tmp_path_factory) -> Path:
    """SMALL trained for 20 short epochs: ~1/3 top-1 on its images, predictions spread over most classes."""
    root = tmp_path_factory.mktemp("teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the CLI's random initial weights come from the global generator
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tensor_data, "CACHE_DIR", root / "cache")
        result = _invoke("train", SMALL, *SMALL_ARGS, "--data", cifar_dir, "--out", root / "run", "--epochs", 20,
                         "--batch-size", 16, "--lr", 3e-3, "--set", "label_smoothing=0",
                         "--set", "warmup_epochs=0.5")  # fmt: skip
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "trained 20 epochs" in result.output
    assert [r["epoch"] for r in read_metrics(root / "run" / "metrics.jsonl")] == list(range(21))
    weights = root / "run" / "model.safetensors"
    # a teacher worth distilling: not a constant predictor
    predicted = torch.bincount(_predictions(weights, cifar_dir), minlength=10)
    assert (predicted > 0).sum() >= 5 and predicted.max() <= N_IMAGES / 2, predicted.tolist()
    return weights


def _predictions(weights: Path, data: Path) -> torch.Tensor:
    from vitopt.train.tensor_data import load_tensor_images, make_batch

    model = load_model(name=SMALL, model_kwargs=SMALL_KWARGS, checkpoint=weights)
    images = load_tensor_images(path=data, spec=model.spec, cache=False)
    x, _ = make_batch(images, list(range(len(images))), spec=model.spec, train=False, padding=None, hflip=False,
                      generator=None)  # fmt: skip
    with torch.no_grad():
        return model.module(x).argmax(1)


@pytest.fixture(scope="module")
def teacher_onnx(teacher, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("teacher-onnx")
    recipe = root / "fast.yaml"
    recipe.write_text(yaml.safe_dump(fast_recipe_dict()))
    result = _invoke("compress", SMALL, *SMALL_ARGS, "--checkpoint", teacher, "--recipe", recipe, "--out", root / "out")
    assert result.exit_code == 0, result.output
    return root / "out" / "model.onnx"


def _eval(tmp_path, model, data, *extra) -> dict:
    out = tmp_path / f"eval{len(list(tmp_path.glob('eval*.json')))}.json"
    result = _invoke("eval", model, "--data", data, "--json", out, *extra)
    assert result.exit_code == 0, result.output
    assert "top1" in result.output
    return json.loads(out.read_text())


def _expected_top1(checkpoint: Path, data: Path) -> float:
    """top-1 by hand: timm's eval transform from the model's spec, image by image."""
    import timm.data
    from PIL import Image

    model = load_model(name=SMALL, model_kwargs=SMALL_KWARGS, checkpoint=checkpoint)
    spec = model.spec
    transform = timm.data.create_transform(input_size=spec.input_size, interpolation=spec.interpolation,
                                           mean=spec.mean, std=spec.std, crop_pct=spec.crop_pct)  # fmt: skip
    classes = sorted(p.name for p in data.iterdir())
    hits = 0
    files = sorted(data.rglob("*.jpg"))
    with torch.no_grad():
        for file in files:
            x = transform(Image.open(file).convert("RGB"))[None]
            hits += int(model.module(x).argmax(1).item() == classes.index(file.parent.name))
    return hits / len(files)


# --- eval ----------------------------------------------------------------------------------------


def test_eval_writes_top1_top5_and_count_as_fractions(teacher, cifar_dir, tmp_path):
    result = _eval(tmp_path, SMALL, cifar_dir, *SMALL_ARGS, "--checkpoint", teacher)
    assert set(result) == {"top1", "top5", "n_images"}
    assert result["n_images"] == N_IMAGES
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    for key in ("top1", "top5"):  # fractions of the images, not percentages
        assert result[key] * N_IMAGES == pytest.approx(round(result[key] * N_IMAGES))
    assert result["top1"] == pytest.approx(_expected_top1(teacher, cifar_dir))
    assert result["top1"] > 0.2, "the trained teacher is well above chance (0.1)"
    limited = _eval(tmp_path, SMALL, cifar_dir, *SMALL_ARGS, "--checkpoint", teacher, "--limit", 20)
    assert limited["n_images"] == 20


@pytest.mark.onnx
def test_eval_with_the_same_model_as_reference_agrees_fully(teacher_onnx, cifar_dir, tmp_path):
    result = _eval(tmp_path, teacher_onnx, cifar_dir, "--reference", teacher_onnx, "--threads", 1)
    assert set(result) == {"top1", "top5", "n_images", "agreement", "mean_kl"}
    assert result["agreement"] == 1.0
    assert result["mean_kl"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.onnx
def test_eval_of_pytorch_against_its_onnx_export_as_reference(teacher, teacher_onnx, cifar_dir, tmp_path):
    result = _eval(tmp_path, SMALL, cifar_dir, *SMALL_ARGS, "--checkpoint", teacher, "--reference", teacher_onnx,
                   "--threads", 1)  # fmt: skip
    assert result["agreement"] >= 1 - 1 / N_IMAGES
    assert 0 <= result["mean_kl"] < 1e-6


@pytest.mark.onnx
def test_eval_of_an_onnx_artifact_matches_pytorch(teacher, teacher_onnx, cifar_dir, tmp_path):
    on_ort = _eval(tmp_path, teacher_onnx, cifar_dir, "--threads", 1)
    on_torch = _eval(tmp_path, SMALL, cifar_dir, *SMALL_ARGS, "--checkpoint", teacher)
    assert on_ort["n_images"] == on_torch["n_images"] == N_IMAGES
    assert abs(on_ort["top1"] - on_torch["top1"]) <= 1 / N_IMAGES
    assert abs(on_ort["top5"] - on_torch["top5"]) <= 1 / N_IMAGES


def test_eval_with_an_unrelated_input_contract_is_refused(teacher, cifar_dir, tmp_path):
    result = _invoke("eval", SMALL, "--data", cifar_dir, *SMALL_ARGS, "--checkpoint", teacher,
                     "--reference", "vitopt/tiny-vit")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "same input size" in result.output


# --- distill ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_distill_raises_agreement_with_the_teacher(teacher, cifar_dir, tmp_path, hard):
    out = tmp_path / "student"
    args = ["distill", SMALL, *STUDENT_ARGS, "--teacher", TEACHER_FACTORY, "--teacher-checkpoint", teacher,
            "--data", cifar_dir, "--out", out, "--epochs", 1, "--batch-size", 16, "--lr", 3e-3,
            "--set", "warmup_epochs=0", "--set", "kd_alpha=1.0", *(["--hard"] if hard else [])]  # fmt: skip
    torch.manual_seed(0)  # the student's random initial weights
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert "trained 1 epochs" in result.output

    initial, epoch1 = read_metrics(out / "metrics.jsonl")
    assert (initial["phase"], epoch1["epoch"]) == ("initial", 1)
    # validated against the teacher on the training images, before any step and after the epoch
    assert initial["train_slice_n_images"] == epoch1["train_slice_n_images"] == N_IMAGES
    assert epoch1["train_slice_agreement"] >= initial["train_slice_agreement"] + 0.2, (initial, epoch1)
    assert epoch1["train_slice_kl"] < initial["train_slice_kl"]
    assert "train_agreement" in epoch1
    weights = out / "model.safetensors"
    student = load_model(name=SMALL, model_kwargs={**SMALL_KWARGS, "embed_dim": 24}, checkpoint=weights)
    assert student.module.cls_token.shape[-1] == 24  # half the teacher's width (48)


# --- bad input: exit 2, one line -----------------------------------------------------------------


BAD_TRAIN_INPUTS = {
    "unknown setting": (["--set", "nonsense=1"], "training setting nonsense"),
    "invalid setting": (["--set", "lr=-1"], "training setting lr"),
    "malformed setting": (["--set", "lr"], "--set takes key=value"),
    "min_lr above lr": (["--lr", "1e-4", "--set", "min_lr=1e-3"], "min_lr must not exceed lr"),
    "resume without checkpoint": (["--resume"], "no training checkpoint"),
}


@pytest.mark.parametrize("command", ["train", "distill"])
@pytest.mark.parametrize("case", list(BAD_TRAIN_INPUTS), ids=list(BAD_TRAIN_INPUTS))
def test_bad_training_input_is_one_clear_line_and_exit_2(cifar_dir, tmp_path, case, command):
    extra, expected = BAD_TRAIN_INPUTS[case]
    out = tmp_path / "out"
    teacher_args = ["--teacher", SMALL, *SMALL_ARGS] if command == "distill" else []
    args = [command, SMALL, *SMALL_ARGS, *teacher_args, "--data", cifar_dir, "--out", out, "--epochs", 1, *extra]
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoint.pt").exists()
