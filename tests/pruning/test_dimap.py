"""DIMAP: the importance formula, one threshold per module, protected layers, no data read, structured
pruning to a FLOPs target on Swin v1 and v2, and sparse Core ML weights for the unstructured mode."""

from __future__ import annotations

import copy
import json

import pytest
import timm
import torch
from pydantic import ValidationError
from torch import nn

from tests.conftest import fast_recipe_dict
from vitopt.errors import UnsupportedOptionError
from vitopt.flops import model_cost
from vitopt.models import load_model
from vitopt.passes import PassContext, pass_registry
from vitopt.pipeline import compress
from vitopt.pruning.dimap import importance, module_layers
from vitopt.recipe import parse_recipe

SWIN_V1 = ("swin_tiny_patch4_window7_224", {"img_size": 32, "patch_size": 2, "window_size": 4, "embed_dim": 32,
                                           "depths": (2, 2), "num_heads": (2, 4), "num_classes": 10})  # fmt: skip
SWIN_V2 = ("swinv2_tiny_window8_256", {"img_size": 32, "patch_size": 2, "window_size": 4, "embed_dim": 32,
                                      "depths": (2, 2), "num_heads": (2, 4), "num_classes": 10})  # fmt: skip


def swin(arch_kwargs) -> nn.Module:
    torch.manual_seed(0)
    arch, kwargs = arch_kwargs
    return timm.create_model(arch, **kwargs).eval()


def dimap(module: nn.Module, context: PassContext | None = None, **options):
    cls = pass_registry().get("dimap")
    return cls(cls.Options(**options)).run(module, context=context or PassContext(spec=None))


def test_importance_is_each_weight_over_the_larger_ones():
    scores = importance(torch.tensor([3.0, -4.0, 1.0]))
    assert scores.tolist() == pytest.approx([9 / 25, 1.0, 1 / 26])  # sorted 16, 9, 1: 16/16, 9/25, 1/26


def test_one_threshold_per_module_and_protected_layers_untouched():
    model = swin(SWIN_V1)
    protected = {n: p.clone() for n, p in model.named_parameters() if "patch_embed" in n or "downsample" in n
                 or n.startswith("head") or "norm" in n}  # fmt: skip
    details = dimap(model, mode="unstructured", sparsity=0.5).details
    assert all(abs(s - 0.5) < 0.01 for s in details["sparsity_by_module"].values())
    by_layer = details["sparsity_by_layer"]
    assert max(by_layer.values()) > min(by_layer.values()) + 0.05  # module-aware: layers differ, modules agree
    assert all(torch.equal(p, dict(model.named_parameters())[n]) for n, p in protected.items())


class UserModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict({"mix": nn.Linear(64, 64), "ffn": nn.Linear(64, 64)})
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.encoder["ffn"](self.encoder["mix"](x.flatten(1)[:, :64])))


def test_any_model_whose_layers_a_recipe_maps_by_glob():
    details = dimap(UserModel(), mode="unstructured", sparsity=0.4,
                    modules={"mixers": ["encoder.mix"], "ffn": ["*.ffn"]}).details  # fmt: skip
    assert set(details["sparsity_by_module"]) == {"mixers", "ffn"}
    with pytest.raises(UnsupportedOptionError, match="matches no linear layer"):
        module_layers(UserModel(), {"qkv": ["*attn.qkv"]})


class Untouchable:
    """Stands for images: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the DIMAP pass read data ({name})")


@pytest.mark.parametrize("mode", ["unstructured", "structured"])
def test_the_pass_reads_no_data(monkeypatch, mode):
    import vitopt.data
    import vitopt.train.tensor_data

    for module, name in ((vitopt.data, "load_batch"), (vitopt.data, "open_images"),
                         (vitopt.train.tensor_data, "load_tensor_images")):  # fmt: skip
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("data loading was called"))
    context = PassContext(spec=Untouchable(), calibration=Untouchable(), data=None, teacher=Untouchable())
    result = dimap(swin(SWIN_V1), context=context, mode=mode, sparsity=0.5, finetune={"epochs": 1})
    assert result.details["finetune"] == {"ran": False, "why": "no --data given"}


@pytest.mark.parametrize("rank", ["cost", "equal"])
@pytest.mark.parametrize("arch", [SWIN_V1, SWIN_V2], ids=["swin-v1", "swin-v2"])
def test_structured_meets_a_flops_target(arch, rank):
    model = swin(arch)
    before = model_cost(model, input_size=(3, 32, 32)).flops
    pruned = dimap(copy.deepcopy(model), mode="structured", flops=0.5, rank=rank).module
    ratio = model_cost(pruned, input_size=(3, 32, 32)).flops / before
    assert 0.45 < ratio <= 0.505
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.onnx
@pytest.mark.parametrize("arch", [SWIN_V1, SWIN_V2], ids=["swin-v1", "swin-v2"])
def test_rank_latency_measures_each_stage_once_and_meets_the_flops_target(arch, tmp_path, monkeypatch):
    import vitopt.pruning.latency as latency
    import vitopt.pruning.unit_latency as unit_latency
    from vitopt.recipe import Target

    monkeypatch.setattr(latency, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(unit_latency, "PROBE_BENCH", dict(warmup=1, min_runs=3, min_time_s=0.01))
    model, context = swin(arch), PassContext(spec=None, targets=(Target(format="onnx"),), threads=1)
    before = model_cost(model, input_size=(3, 32, 32)).flops
    pruned = dimap(copy.deepcopy(model), context=context, mode="structured", flops=0.5, rank="latency").module
    assert 0.45 < model_cost(pruned, input_size=(3, 32, 32)).flops / before <= 0.505
    (cached,) = tmp_path.glob("dimap-units-*.json")
    costs = json.loads(cached.read_text())["costs"]
    assert len(costs["heads"]) == len(costs["mlp"]) == 2 and min(costs["heads"] + costs["mlp"]) > 0
    monkeypatch.setattr(unit_latency, "_measure", lambda *a, **k: pytest.fail("measured again despite the cache"))
    dimap(copy.deepcopy(model), context=context, mode="structured", flops=0.5, rank="latency")


@pytest.mark.onnx
def test_rank_latency_prunes_a_vit_too(tmp_path, monkeypatch):
    import vitopt.pruning.latency as latency
    import vitopt.pruning.unit_latency as unit_latency
    from vitopt.recipe import Target

    monkeypatch.setattr(latency, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(unit_latency, "PROBE_BENCH", dict(warmup=1, min_runs=3, min_time_s=0.01))
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, num_classes=10).eval()
    context = PassContext(spec=None, targets=(Target(format="onnx"),), threads=1)
    before = model_cost(vit, input_size=(3, 32, 32)).flops
    pruned = dimap(copy.deepcopy(vit), context=context, mode="structured", flops=0.6, rank="latency").module
    assert model_cost(pruned, input_size=(3, 32, 32)).flops / before <= 0.605
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_rank_latency_says_what_it_needs():
    with pytest.raises(UnsupportedOptionError, match="needs a target"):
        dimap(swin(SWIN_V1), mode="structured", flops=0.5, rank="latency")


def test_budgets_are_validated():
    with pytest.raises(ValidationError, match="exactly one budget"):
        pass_registry().get("dimap").Options(sparsity=0.5, flops=0.5)
    with pytest.raises(ValidationError, match="needs mode: structured"):
        pass_registry().get("dimap").Options(flops=0.5)
    with pytest.raises(UnsupportedOptionError, match="out of DIMAP's reach"):
        dimap(swin(SWIN_V1), mode="unstructured", params=0.01)


@pytest.mark.onnx
def test_compress_without_data_exports_a_pruned_swin_v2(tmp_path):
    model = load_model(name=SWIN_V2[0], model_kwargs=SWIN_V2[1])
    options = {"mode": "structured", "flops": 0.6, "finetune": {"epochs": 1}}
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": "dimap", "options": options}]))
    report = compress(model=model, recipe=recipe, out_dir=tmp_path / "out")
    (row,) = report["artifacts"]
    assert row["status"] == "ok" and row["parity"]["max_abs_diff"] < 1e-4
    assert report["passes"][0]["details"]["finetune"]["ran"] is False
    assert report["compressed_model"]["flops"] < 0.62 * report["model"]["flops"]


@pytest.mark.coreml
def test_unstructured_weights_are_stored_sparse_in_core_ml(tmp_path):
    from vitopt.formats import FORMATS

    fmt = FORMATS.get("coreml")
    model = load_model(name=SWIN_V1[0], model_kwargs=SWIN_V1[1])
    sizes = {}
    for name, module in (("dense", model.module), ("pruned", dimap(copy.deepcopy(model.module), sparsity=0.5).module)):
        exporter = fmt.exporter_class()(fmt=fmt, precision="fp16", options={})
        artifact = exporter.export(module, spec=model.spec, staging=tmp_path / name, calibration=None)
        fmt.validator_function()(artifact.main, spec=model.spec, precision="fp16")
        sizes[name] = artifact.size_bytes
        assert ("sparse_weights" in artifact.details) == (name == "pruned")
    assert sizes["pruned"] < 0.85 * sizes["dense"]


@pytest.mark.onnx
def test_an_unstructured_run_saves_the_zeroed_model_beside_the_artifacts(tmp_path):
    model = load_model(name=SWIN_V1[0], model_kwargs=SWIN_V1[1])
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": "dimap", "options": {"sparsity": 0.5}}]))
    report = compress(model=model, recipe=recipe, out_dir=tmp_path / "out")
    saved = load_model(name=report["pytorch_model"])
    zeros = sum(int((p == 0).sum()) for p in saved.module.parameters() if p.ndim >= 2)
    assert zeros >= report["passes"][0]["details"]["params"] - report["passes"][0]["details"]["nonzero_params"]
    x = torch.randn(2, 3, 32, 32)
    pruned = dimap(copy.deepcopy(model.module), sparsity=0.5).module
    assert torch.allclose(saved.module(x), pruned(x), atol=1e-6)
