"""One error path for the CLI: bad paths refused before any model loads, training never silently
replaces a run, and an unexpected error is one line plus a log file, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vitopt.cli import app
from vitopt.train.loop import check_run_folder

RUN_FILES = {"checkpoint.pt": "state", "metrics.jsonl": "{}\n", "model.safetensors": "weights"}


def _invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def _a_run(folder):
    folder.mkdir()
    for name, text in RUN_FILES.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("command", ["train", "distill"])
def test_training_into_an_existing_run_is_refused(tmp_path, command):
    run = _a_run(tmp_path / "run")
    teacher = ["--teacher", "vitopt/tiny-vit"] if command == "distill" else []
    code, output = _invoke(command, "vitopt/tiny-vit", *teacher, "--data", tmp_path, "--out", run)
    assert code == 2 and "already holds a training run" in output and "--resume" in output and "--overwrite" in output
    assert "loading" not in output  # refused before any model was loaded
    assert {p.name: p.read_text() for p in run.iterdir()} == RUN_FILES


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(Exception, match="contradict"):
        check_run_folder(_a_run(tmp_path / "run"), resume=True, overwrite=True)


def test_overwrite_starts_afresh(tmp_path):
    from vitopt.train.loop import _clear_run

    run = _a_run(tmp_path / "run")
    check_run_folder(run, resume=False, overwrite=True)
    _clear_run(run)
    assert not list(run.iterdir())


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_compress_out_that_cannot_be_a_folder(tmp_path, where):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "out"
    code, output = _invoke("compress", "vitopt/tiny-vit", "--out", out)
    assert code == 2 and "is a file" in output and "loading" not in output


def test_compress_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    code, output = _invoke("compress", "vitopt/tiny-vit", "--out", tmp_path / "mine")
    assert code == 2 and "vitopt did not write" in output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "x"


@pytest.mark.parametrize("flag", ["--eval-data", "--data"])
def test_missing_data_is_refused_before_the_model_loads(tmp_path, flag):
    code, output = _invoke("compress", "vitopt/tiny-vit", "--out", tmp_path / "out", flag, tmp_path / "nowhere")
    assert code == 2 and f"{flag} " in output and "does not exist" in output and "loading" not in output


def test_json_into_a_folder_is_refused_before_the_work(tmp_path):
    code, output = _invoke("inspect", "vitopt/tiny-vit", "--json", tmp_path)
    assert code == 2 and "--json" in output and "is a folder" in output and "loading" not in output


def test_unwritable_json_is_refused_before_the_work(tmp_path, monkeypatch):
    import vitopt.cli.support as support

    monkeypatch.setattr(support.os, "access", lambda path, mode: False)  # root may write anywhere: simulate
    code, output = _invoke("inspect", "vitopt/tiny-vit", "--json", tmp_path / "x.json")
    assert code == 2 and "cannot write --json" in output and not (tmp_path / "x.json").exists()


def test_an_internal_error_is_one_line_and_a_log_file(tmp_path, monkeypatch):
    import vitopt.models

    def broken(**_):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(vitopt.models, "load_model", broken)
    monkeypatch.setenv("VITOPT_LOG_DIR", str(tmp_path / "logs"))
    code, output = _invoke("inspect", "vitopt/tiny-vit")
    assert code == 1 and "Traceback" not in output
    assert "internal error in vitopt inspect: ZeroDivisionError: a bug" in output
    (log,) = (tmp_path / "logs").iterdir()
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text() and str(log) in output


def test_a_damaged_report_is_one_line(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text('{"schema": "vitopt.report/1", "artifacts": [{"target": "onnx"}]}')
    code, output = _invoke("bundle", tmp_path / "out", "--platform", "android", "--out", tmp_path / "a.zip")
    assert code == 2 and "is damaged" in output and "model" in output and "artifacts[0]" in output


def test_a_bundle_into_a_folder_is_refused(tmp_path):
    code, output = _invoke("bundle", tmp_path, "--platform", "android", "--out", tmp_path)
    assert code == 2 and "--out" in output and "is a folder" in output


def test_a_command_exit_code_is_not_an_internal_error(tmp_path):
    fixture = "tests/fixtures/user_models.py:exports_differently"
    recipe = tmp_path / "fast.yaml"
    recipe.write_text("version: 1\ntargets: [{format: onnx}]\nbench: {warmup: 1, min_runs: 2, min_time_s: 0}\n")
    code, output = _invoke("compress", fixture, "--input-size", "3,8,8", "--recipe", recipe, "--out", tmp_path / "o")
    assert code == 1 and "artifact(s) failed" in output and "internal error" not in output
