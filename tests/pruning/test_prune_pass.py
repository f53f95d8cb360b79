"""The prune and distill passes through ``compress``: budgets, the saved pruned model, resume, errors."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import fast_recipe_dict
from tests.train.conftest import SMALL, SMALL_KWARGS
from vitopt.errors import DataError
from vitopt.models import load_model
from vitopt.pipeline import compress, work_dir_for
from vitopt.pruning import prune_state
from vitopt.pruning.families import family_for
from vitopt.recipe import parse_recipe

PRUNE = {"flops": 0.5, "steps": 2, "saliency_images": 32, "saliency_batch": 16, "step_epochs": 0.5,
         "multiples": {"emb": 8, "heads": 1, "qk": 4, "v": 4, "mlp": 16},
         "finetune": {"epochs": 1, "batch_size": 32, "bf16": False}}  # fmt: skip


def small_model():
    torch.manual_seed(0)
    return load_model(name=SMALL, model_kwargs=dict(SMALL_KWARGS))


def prune_recipe(**options):
    passes = [{"name": "prune", "options": {**PRUNE, **options}}]
    return parse_recipe(fast_recipe_dict(passes=passes, verify={"n_images": 16}))


def run(tmp_path, data, recipe=None, *, name="out", **kwargs):
    return compress(model=small_model(), recipe=recipe or prune_recipe(), out_dir=tmp_path / name, data=data, **kwargs)


def test_a_flops_budget_is_met_and_the_pruned_model_is_saved_loadable_and_exported(cifar_dir, tmp_path):
    report = run(tmp_path, cifar_dir)
    details = report["passes"][0]["details"]
    assert details["predicted"]["fraction"] <= 0.5
    assert report["passes"][0]["flops_after"] <= 0.55 * report["passes"][0]["flops_before"]
    row = report["artifacts"][0]
    assert row["status"] == "ok" and row["parity"]["max_abs_diff"] < 1e-3  # the sliced model exports exactly
    reloaded = load_model(name=str(tmp_path / "out" / "pytorch"))
    assert family_for(reloaded.module).read_widths(reloaded.module).to_dict() == details["widths_after"]
    again = compress(model=reloaded, recipe=parse_recipe(fast_recipe_dict()), out_dir=tmp_path / "again")
    assert again["artifacts"][0]["status"] == "ok"
    assert "| block | EMB | H | QK | V | MLP |" in (tmp_path / "out" / "report.md").read_text()
    assert not work_dir_for(tmp_path / "out").exists()  # checkpoints go once the run succeeded


def test_resuming_an_interrupted_run_gives_the_uninterrupted_result(cifar_dir, tmp_path, monkeypatch):
    whole = run(tmp_path, cifar_dir, name="whole")
    import vitopt.pruning.run as prune_run

    real, calls = prune_run.finetune, []

    def killed_in_step_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill lands after step 1 was sliced, fine-tuned and checkpointed
        return real(*args, **kwargs)

    monkeypatch.setattr(prune_run, "finetune", killed_in_step_two)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, cifar_dir, name="resumed")
    state = torch.load(work_dir_for(tmp_path / "resumed") / "prune" / prune_state.STATE_FILE, weights_only=True)
    assert state["step"] == 1 and state["sliced"]
    monkeypatch.setattr(prune_run, "finetune", real)
    resumed = run(tmp_path, cifar_dir, name="resumed", resume=True)
    assert resumed["passes"][0]["details"]["widths_after"] == whole["passes"][0]["details"]["widths_after"]
    a = load_model(name=str(tmp_path / "whole" / "pytorch")).module.state_dict()
    b = load_model(name=str(tmp_path / "resumed" / "pytorch")).module.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_pass_that_trains_needs_data_before_anything_runs(tmp_path):
    with pytest.raises(DataError, match="'prune' trains the model") as err:
        run(tmp_path, None)
    assert "--data" in err.value.hint
    assert not (tmp_path / "out").exists()


def test_distill_chains_after_prune(cifar_dir, tmp_path):
    passes = [{"name": "prune", "options": {**PRUNE, "finetune": {"epochs": 0}, "step_epochs": 0}},
              {"name": "distill", "options": {"epochs": 1, "batch_size": 32, "bf16": False}}]  # fmt: skip
    recipe = parse_recipe(fast_recipe_dict(passes=passes, verify={"n_images": 16}))
    report = run(tmp_path, cifar_dir, recipe)
    assert [p["name"] for p in report["passes"]] == ["prune", "distill"]
    assert report["passes"][1]["details"]["epochs"] == 1
    assert json.loads((tmp_path / "out" / "report.json").read_text())["pytorch_model"]


def test_cli_compress_with_prune_and_no_data_is_one_line_exit_2(cli, tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"version": 1, "name": "p", "passes": [{"name": "prune", "options": {"flops": 0.5}}],
                                  "targets": [{"format": "onnx"}]}))  # fmt: skip
    result = cli("compress", "vitopt/tiny-vit", "--recipe", recipe, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "needs images" in result.output and "--data" in result.output


@pytest.mark.slow
def test_a_latency_budget_is_measured_on_the_target_and_closed_loop(cifar_dir, tmp_path):
    """The table is measured on ONNX Runtime; the model is timed against the original before step 2 and
    after the last step, and the report shows the pass's prediction next to the artifact's measurement."""
    fast = {"exporter": "torchscript", "simplify": False}
    options = {**PRUNE, "flops": None, "latency": 0.7, "latency_grid_points": 2, "step_epochs": 0,
               "finetune": {"epochs": 0}}  # fmt: skip
    recipe = parse_recipe(fast_recipe_dict(passes=[{"name": "prune", "options": options}],
                                           targets=[{"format": "onnx", "options": fast}], verify={"n_images": 16}))
    report = run(tmp_path, cifar_dir, recipe)
    details = report["passes"][0]["details"]
    assert details["cost_info"]["runtime_target"] == "onnx" and not details["cost_info"]["table_cached"]
    assert [m["step"] for m in details["measured_during_pruning"]][:2] == [1, 2]
    assert all(0 < m["fraction"] < 1.5 for m in details["measured_during_pruning"])
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "predicted" in markdown and "measured" in markdown
