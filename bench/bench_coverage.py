"""Support matrix: one small model of every timm vision-transformer and ViT/CNN hybrid family, each run
through ``vitopt compress -t onnx -t openvino -t coreml -t tensorrt`` (recipe ``bench/coverage.yaml``:
reparameterisation, default precisions, parity on 32 real images) with real calibration images.

Per target: ok / not_benchmarked (why; Core ML off macOS is converted and validated, TensorRT without a GPU
is the prepared ONNX verified on ONNX Runtime) / failed (first line of the error), parity, and the family's
wall time. Models have random weights (no downloads here): parity and support are meaningful, accuracy is
not. Each family runs in its own process, as a user would run it, with a timeout; each result is appended
to a state file when it finishes, so an interrupted sweep resumes where it stopped (``--fresh`` starts
over). Prints the matrix (markdown) at the end and writes it to ``--markdown``.

Usage: .venv/bin/python bench/bench_coverage.py [--families swin maxvit ...] [--rerun] [--markdown FILE] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coverage_table import matrix_markdown

ROOT = Path(__file__).resolve().parents[1]
VITOPT = str(Path(sys.executable).with_name("vitopt"))
TARGETS = ("onnx", "openvino", "coreml", "tensorrt")
STATE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vitopt" / "bench-coverage.jsonl"

# (family, the smallest model timm registers for it): vision transformers and ViT/CNN hybrids
FAMILIES: list[tuple[str, str]] = [
    ("vit", "vit_tiny_patch16_224"), ("deit", "deit_tiny_patch16_224"), ("deit3", "deit3_small_patch16_224"),
    ("vit_hybrid", "vit_tiny_r_s16_p8_224"), ("vit_relpos", "vit_relpos_small_patch16_224"),
    ("samvit", "samvit_base_patch16_224"), ("beit", "beit_base_patch16_224"), ("eva02", "eva02_tiny_patch14_224"),
    ("cait", "cait_xxs24_224"), ("xcit", "xcit_nano_12_p16_224"), ("convit", "convit_tiny"),
    ("crossvit", "crossvit_tiny_240"), ("tnt", "tnt_s_patch16_224"), ("pit", "pit_ti_224"), ("levit", "levit_128s"),
    ("swin", "swin_tiny_patch4_window7_224"), ("swinv2", "swinv2_tiny_window8_256"),
    ("swinv2_cr", "swinv2_cr_tiny_ns_224"), ("twins", "twins_svt_small"), ("pvt_v2", "pvt_v2_b0"),
    ("coat", "coat_lite_tiny"), ("nest", "nest_tiny"), ("gcvit", "gcvit_xxtiny"), ("davit", "davit_tiny"),
    ("maxvit", "maxvit_nano_rw_256"), ("coatnet", "coatnet_nano_rw_224"), ("focalnet", "focalnet_tiny_srf"),
    ("mobilevit", "mobilevit_xxs"), ("mobilevitv2", "mobilevitv2_050"), ("efficientformer", "efficientformer_l1"),
    ("efficientformerv2", "efficientformerv2_s0"), ("fastvit", "fastvit_t8"), ("mobileclip", "fastvit_mci0"),
    ("repvit", "repvit_m0_9"), ("edgenext", "edgenext_xx_small"), ("efficientvit_mit", "efficientvit_b0"),
    ("efficientvit_msra", "efficientvit_m0"), ("tiny_vit", "tiny_vit_5m_224"), ("hiera", "hiera_tiny_224"),
    ("sam2_hiera", "sam2_hiera_tiny"), ("vitamin", "vitamin_small_224"), ("volo", "volo_d1_224"),
    ("mvitv2", "mvitv2_tiny"), ("nextvit", "nextvit_small"), ("visformer", "visformer_tiny"),
    ("caformer", "caformer_s18"), ("swiftformer", "swiftformer_xs"), ("shvit", "shvit_s1"),
    ("botnet", "botnet26t_256"), ("halonet", "halonet26t"),
]  # fmt: skip


def run_family(family: str, model: str, *, data: Path, work: Path, timeout: float) -> dict:
    out = work / family / "out"
    command = [VITOPT, "compress", model, *[a for t in TARGETS for a in ("-t", t)], "--recipe",
               str(ROOT / "bench" / "coverage.yaml"), "--data", str(data), "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0] + f"\nerror: timed out after {timeout:.0f} s"
    row = {"family": family, "model": model, "seconds": round(time.perf_counter() - start, 1),
           "exit_code": proc.returncode}  # fmt: skip
    reports = [folder / "report.json" for folder in (out, out.with_name("out.failed"))]
    report = next((path for path in reports if path.is_file()), None)
    if report is None:
        return {**row, "error": _first_error(output)}
    return {**row, **_from_report(json.loads(report.read_text()))}


def _from_report(report: dict) -> dict:
    targets = {}
    for art in report["artifacts"]:
        parity = art.get("parity") or {}
        targets[art["target"]] = {"status": art["status"], "reason": (art.get("reason") or "").splitlines()[:1],
                                  "top1": parity.get("top1_agreement"), "max_abs_diff": parity.get("max_abs_diff"),
                                  "parity_runtime": parity.get("runtime"), "export": art.get("export", {})}  # fmt: skip
    return {"params_m": round(report["model"].get("params", 0) / 1e6, 2), "targets": targets}


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "internal error"))]
    return (errors or lines[-1:] or ["no output"])[0][:300]


def load_state(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["family"]: row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", help="run these families only (names in FAMILIES)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "imagenet-samples-256.tar")
    parser.add_argument("--state", type=Path, default=STATE, help=f"results so far (default {STATE})")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results and run every family again")
    parser.add_argument("--rerun", action="store_true", help="run the chosen families again even if done")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per family")
    parser.add_argument("--markdown", type=Path, help="also write the matrix here")
    args = parser.parse_args()
    chosen = _chosen(args.families)
    if args.fresh and args.state.exists():
        args.state.unlink()
    state = load_state(args.state)
    todo = [(f, m) for f, m in chosen if args.rerun or state.get(f, {}).get("model") != m]
    print(f"{len(chosen)} families, {len(chosen) - len(todo)} already done ({args.state}), {len(todo)} to run",
          flush=True)  # fmt: skip
    _sweep(todo, state=state, args=args)
    table = matrix_markdown([state[f] for f, _ in chosen if f in state])
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


def _chosen(names: list[str] | None) -> list[tuple[str, str]]:
    if not names:
        return FAMILIES
    known = dict(FAMILIES)
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"error: unknown families {unknown}; known: {', '.join(known)}")
    return [(n, known[n]) for n in names]


def _sweep(todo: list[tuple[str, str]], *, state: dict, args) -> None:
    args.state.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vitopt-coverage-") as work:
        for done, (family, model) in enumerate(todo, start=1):
            row = run_family(family, model, data=args.data, work=Path(work), timeout=args.timeout)
            state[family] = row
            with args.state.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            eta = (time.perf_counter() - started) / done * (len(todo) - done)
            print(f"[{done}/{len(todo)}] {family} ({model}): {_summary(row)} in {row['seconds']:.0f} s; "
                  f"ETA {eta / 60:.0f} min", flush=True)  # fmt: skip


def _summary(row: dict) -> str:
    if "error" in row:
        return f"compress stopped: {row['error']}"
    return ", ".join(f"{t} {row['targets'].get(t, {}).get('status', 'absent')}" for t in TARGETS)


if __name__ == "__main__":
    main()
