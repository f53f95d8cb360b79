"""The compress output folder is one run's files and a report that describes exactly them."""

from __future__ import annotations

import json
import os

import pytest

from vitopt import run_folder as rf
from vitopt import run_swap
from vitopt.errors import InputError
from vitopt.run_files import check_against_report, verify_run_folder


def _write_run(folder, files: dict[str, str]) -> None:
    """A run through the real transaction: its files, then the commit."""
    with rf.run_folder(folder) as run:
        for name, text in files.items():
            (run.path / name).parent.mkdir(parents=True, exist_ok=True)
            (run.path / name).write_text(text)
        report = {"schema": "vitopt.report/1", "artifacts": [{"path": str(run.path / name)} for name in files]}
        run.commit(report, write_report=_write_json)


def _write_json(report, *, out_dir) -> None:
    (out_dir / "report.json").write_text(json.dumps(report))


def _report(folder) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_commit_records_every_file_and_final_paths(tmp_path):
    out = tmp_path / "out"
    _write_run(out, {"model.onnx": "a", "candidates/model.int8.onnx": "b"})
    report = _report(out)
    assert sorted(report["files"]) == ["candidates/model.int8.onnx", "model.onnx"]
    assert report["artifacts"][0]["path"] == str(out / "model.onnx")  # not the private folder it was built in
    assert report["artifacts"][0]["sha256"] == report["files"]["model.onnx"]
    assert verify_run_folder(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # no private folder left


def test_a_new_run_replaces_the_whole_set(tmp_path):
    out = tmp_path / "out"
    _write_run(out, {"model.onnx": "old", "model.xml": "old"})
    _write_run(out, {"model.onnx": "new"})
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]  # no stale model.xml
    assert (out / "model.onnx").read_text() == "new" and verify_run_folder(out) == []


def test_a_failed_run_leaves_the_previous_one_untouched(tmp_path):
    out = tmp_path / "out"
    _write_run(out, {"model.onnx": "old"})
    with pytest.raises(KeyboardInterrupt), rf.run_folder(out) as run:
        (run.path / "model.onnx").write_text("half")
        raise KeyboardInterrupt
    assert (out / "model.onnx").read_text() == "old" and verify_run_folder(out) == []
    assert not list(tmp_path.glob(".out.next-*"))


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    _write_run(out, {"model.onnx": "old"})
    (tmp_path / ".out.next-killed").mkdir()
    (out / ".vitopt-staging-old").mkdir()  # where versions before the run folder staged
    _write_run(out, {"model.onnx": "new"})
    assert not (tmp_path / ".out.next-killed").exists() and verify_run_folder(out) == []


def test_two_runs_into_one_folder_are_refused(tmp_path):
    with rf.run_folder(tmp_path / "out"), pytest.raises(InputError, match="another vitopt run"), \
            rf.run_folder(tmp_path / "out"):
        pass


def test_swap_without_rename_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(run_swap, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    _write_run(out, {"model.onnx": "old"})
    _write_run(out, {"model.onnx": "new"})
    assert (out / "model.onnx").read_text() == "new" and verify_run_folder(out) == []


def test_a_kill_between_the_two_renames_is_undone(tmp_path):
    out = tmp_path / "out"
    _write_run(out, {"model.onnx": "old"})
    holder = tmp_path / ".out.old-x"
    holder.mkdir()
    os.rename(out, holder / "run")  # where the fallback swap had put it when the process died
    _write_run(tmp_path / "other", {"x": "y"})  # unrelated folders are not touched
    run_swap.restore_interrupted_swap(out)
    assert (out / "model.onnx").read_text() == "old"


@pytest.mark.parametrize("case", ["file", "under_file", "foreign", "cwd", "parent_of_cwd"])
def test_outputs_vitopt_cannot_replace_are_refused(tmp_path, monkeypatch, case):
    (tmp_path / "f").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    out = {"file": tmp_path / "f", "under_file": tmp_path / "f" / "out", "foreign": tmp_path / "foreign",
           "cwd": tmp_path / "work", "parent_of_cwd": tmp_path}[case]  # fmt: skip
    with pytest.raises(InputError):
        rf.check_output_folder(out)


def test_unwritable_parent_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(rf.os, "access", lambda path, mode: False)  # root may write anywhere: simulate
    with pytest.raises(InputError, match="cannot write"):
        rf.check_output_folder(tmp_path / "out")


def test_not_enough_space_is_refused(tmp_path):
    with pytest.raises(InputError, match="free space"):
        rf.check_free_space(tmp_path / "out", needed_bytes=1 << 62)


def test_an_artifact_changed_after_the_run_is_refused(tmp_path):
    out = tmp_path / "out"
    _write_run(out, {"model.xml": "graph", "model.bin": "weights"})
    check_against_report(out / "model.xml")
    (out / "model.bin").write_text("tampered")
    with pytest.raises(InputError, match="sha256"):
        check_against_report(out / "model.xml")
    assert verify_run_folder(out) == ["sha256 differs: model.bin"]
