"""Bad input of every kind: one `error:` line naming the problem, a hint, exit code 2, no traceback."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import pickle
import random
import sys
import tarfile

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from vitopt.errors import MissingBackendError
from vitopt.formats import require
from vitopt.models import load_model

TINY = "vitopt/tiny-vit"


def _refused(result, *words: str) -> tuple[str, str]:
    """The one error line and its hint line; every word must be in the error line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.output.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, result.output
    line = lines[errors[0]]
    assert all(word in line for word in words), line
    hint = lines[errors[0] + 1] if errors[0] + 1 < len(lines) else ""
    return line, hint


# 1. --mean / --std


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--std", "0,0,0", ["--std", "std must be positive"]),
        ("--std", "-1", ["--std", "std must be positive"]),
        ("--std", "0.2,0.2", ["--std", "std has 2 values for 3 input channel"]),
        ("--mean", "0.5,0.5,0.5,0.5", ["--mean", "mean has 4 values for 3 input channel"]),
    ],
    ids=["std-zero", "std-negative", "std-count", "mean-count"],
)
def test_bad_mean_or_std_is_refused_naming_the_flag(cli, flag, value, words):
    _refused(cli("inspect", TINY, flag, value), *words)


def test_one_mean_and_std_value_stands_for_every_channel():
    spec = load_model(name=TINY, spec_overrides={"mean": (0.5,), "std": (0.25,)}).spec
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25)


# 2. --model-arg checked by the constructor

FACTORY = '''
from torch import nn

def build(depth=2, num_classes=10):
    return nn.Sequential(*[nn.Identity() for _ in range(depth)], nn.Flatten(), nn.LazyLinear(num_classes))
'''
FACTORY_NAME = "net.py:build"  # written to tmp_path by the test


@pytest.mark.parametrize(
    ("name", "arg", "words", "hint"),
    [
        (TINY, "bogus_kw=1", ["bogus_kw=1", "rejected by vit_tiny_patch16_224"], "VisionTransformer takes:"),
        (TINY, "depth=abc", ["depth='abc'", "rejected by vit_tiny_patch16_224"], "depth=12"),
        ("test_vit", "bogus_kw=1", ["bogus_kw=1", "rejected by test_vit"], "VisionTransformer takes:"),
        (FACTORY_NAME, "deph=3", ["deph=3", "rejected by"], "did you mean 'depth'?"),
        (FACTORY_NAME, "bogus_kw=1", ["bogus_kw=1", "rejected by", "unexpected keyword"], "build takes: depth"),
        (FACTORY_NAME, "depth=abc", ["depth='abc'", "rejected by"], "build's defaults: depth=2"),
    ],
    ids=["zoo-unknown-kw", "zoo-bad-value", "timm-unknown-kw", "factory-typo", "factory-unknown-kw",
         "factory-bad-value"],
)  # fmt: skip
def test_model_arguments_the_constructor_rejects_are_refused(cli, tmp_path, name, arg, words, hint):
    if name == FACTORY_NAME:
        (tmp_path / "net.py").write_text(FACTORY)
        name = str(tmp_path / FACTORY_NAME)
    _, hint_line = _refused(cli("inspect", name, "--model-arg", arg), *words)
    assert hint in hint_line


def test_a_model_arg_value_that_is_not_yaml_is_refused(cli):
    _refused(cli("inspect", TINY, "--model-arg", "depths=[2,2"), "--model-arg", "depths=[2,2")


# 3. file.py:factory that cannot be imported, fails or returns no module


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("raise RuntimeError('boom at import')\ndef build(): pass\n", ["importing", "RuntimeError: boom at import"]),
        ("def build(:\n", ["importing", "SyntaxError"]),
        ("def build():\n    raise ValueError('exploded')\n", ["failed to build", "ValueError: exploded"]),
        ("def build():\n    return 42\n", ["returned int", "not a torch nn.Module"]),
    ],
    ids=["import-raises", "syntax-error", "factory-raises", "not-a-module"],
)
def test_a_broken_factory_file_is_refused_in_one_line(cli, tmp_path, source, words):
    (tmp_path / "net.py").write_text(source)
    _refused(cli("inspect", f"{tmp_path / 'net.py'}:build"), *words)


# 4. checkpoints


class Custom:  # a class a tensors-only load must refuse
    pass


class RunsAShell:  # unpickling this calls os.system: the safe loader must refuse it without running it
    def __reduce__(self):
        return os.system, ("exit 0",)


def _checkpoint(kind: str, path) -> None:
    if kind == "custom-class":
        torch.save({"x": Custom()}, path)
    elif kind == "os-system":
        path.write_bytes(pickle.dumps(RunsAShell()))
    else:
        path.write_bytes(random.Random(0).randbytes(4096))


@pytest.mark.parametrize(
    ("kind", "words", "hint"),
    [
        ("custom-class", ["holds pickled objects beyond tensors"], "--trust-checkpoint only if you trust its source"),
        ("os-system", ["holds pickled objects beyond tensors"], "--trust-checkpoint only if you trust its source"),
        ("random-bytes", ["not a checkpoint", "neither a PyTorch file nor safetensors"], "torch.save"),
    ],
)
def test_checkpoint_says_whether_it_holds_code_or_is_no_checkpoint(cli, tmp_path, kind, words, hint):
    path = tmp_path / "weights.pth"
    _checkpoint(kind, path)
    result = cli("inspect", TINY, "--checkpoint", path)
    _, hint_line = _refused(result, *words)
    assert hint in hint_line
    assert "weights_only" not in result.output  # torch's own advice is not repeated


def test_checkpoint_of_another_architecture_hints_the_real_flag(cli, tmp_path):
    path = tmp_path / "deit.safetensors"
    save_file(load_model(name="vitopt/tiny-deit").module.state_dict(), str(path))
    _, hint = _refused(cli("inspect", TINY, "--checkpoint", path), "does not fit the model")
    assert "--model-arg num_classes=N" in hint and "--num-classes" not in hint
    assert "--model-arg" in cli("compress", "--help").output


# 5. recipe files


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"name: caf\xe9\n", ["not UTF-8", "0xe9"]),
        (b"", ["is empty"]),
        (b"# only a comment\n", ["is empty"]),
        (b"null\n", ["is empty"]),
    ],
    ids=["latin-1", "empty", "comments-only", "null"],
)
def test_unusable_recipe_file_is_refused(cli, tmp_path, content, words):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(content)
    _, hint = _refused(cli("compress", TINY, "--recipe", path, "--out", tmp_path / "out"), "recipe", *words)
    assert not (tmp_path / "out" / "report.json").exists()
    if "is empty" in words:
        assert "targets:" in hint and "baseline" in hint


# 6. a backend that is installed but fails to import


class _BrokenBackend(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds one module whose import fails the way a broken shared library does."""

    name = "vitopt_broken_backend"

    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.ModuleSpec(fullname, self) if fullname == self.name else None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        raise OSError("libbroken.so: cannot open shared object file: No such file or directory")


def test_backend_failing_to_import_is_a_missing_backend_error(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [_BrokenBackend(), *sys.meta_path])
    with pytest.raises(MissingBackendError) as info:
        require(_BrokenBackend.name, extra="onnx", feature="running ONNX models")
    err = info.value
    assert err.exit_code == 2 and "\n" not in err.message
    assert "vitopt_broken_backend" in err.message
    assert "installed but fails to import (OSError: libbroken.so" in err.message
    assert "pip install 'vitopt[onnx]'" in err.hint


# 7. image data


def _write_images(root, names: dict[str, bool]) -> None:
    """Files under ``root``: a real JPEG where the value is True, text named .jpg where it is False."""
    for name, real in names.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if real:
            Image.new("RGB", (16, 16), "red").save(path)
        else:
            path.write_text("<html>not an image</html>")


def _as_tar(folder):
    with tarfile.open(folder.with_suffix(".tar"), "w") as tar:
        tar.add(folder, arcname=folder.name)
    return folder.with_suffix(".tar")


@pytest.mark.parametrize(
    ("names", "as_tar"),
    [({"cat/a.jpg": False, "dog/b.jpg": False}, False), ({"cat/a.jpg": False}, False),
     ({"cat/a.jpg": False, "dog/b.jpg": False}, True)],
    ids=["two-classes", "one-class-not-called-unlabelled", "tar"],
)  # fmt: skip
def test_image_folder_of_non_images_says_so(cli, tmp_path, names, as_tar):
    _write_images(tmp_path / "imgs", names)
    data = _as_tar(tmp_path / "imgs") if as_tar else tmp_path / "imgs"
    line, _ = _refused(cli("eval", TINY, "--data", data), "no file in", "is a readable image", "cat/a.jpg")
    assert "unlabelled" not in line


def test_one_unreadable_file_among_images_is_named(cli, tmp_path):
    _write_images(tmp_path / "imgs", {"cat/a.jpg": True, "dog/b.jpg": False})
    line, _ = _refused(cli("eval", TINY, "--data", tmp_path / "imgs"), "'dog/b.jpg'", "is not a readable image")
    assert "BytesIO" not in line


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_data_with_no_images_is_refused(cli, tmp_path, as_tar):
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("no images here")
    data = _as_tar(tmp_path / "imgs") if as_tar else tmp_path / "imgs"
    _refused(cli("eval", TINY, "--data", data), "no images found")
