"""ONNX Runtime's mobile usability checker, run as its own tool and parsed from its real output: per
execution provider (NNAPI, CoreML), partitions, coverage, blocking operators and its verdict. Used on
every static-shape ONNX artifact (its report row), by ``vitopt check --mobile`` and by Android bundles."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

EPS = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram")


def usability(path: Path) -> dict[str, Any]:
    """ONNX Runtime's mobile usability checker on ``path``: per execution provider, partitions, coverage,
    blocking operators and its verdict, parsed from the tool's own report."""
    cmd = [sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    text = done.stdout + done.stderr
    verdicts = {ep: _section(text, ep) for ep in EPS}
    if done.returncode != 0 or not all(verdicts.values()):
        return {"error": (text.strip().splitlines() or ["no output"])[-1][:300]}
    return {**verdicts, "recommended_android": _recommended(verdicts, ("NNAPI",)),
            "recommended_ios": _recommended(verdicts, ("CoreML MLProgram", "CoreML NeuralNetwork"))}


def _section(text: str, ep: str) -> dict[str, Any] | None:
    start = text.find(f"Checking {ep}\n")
    if start < 0:
        return None
    body = text[start : text.find("================", start)]
    found = re.search(r"(\d+) partitions with a total of (\d+)/(\d+) nodes", body)
    verdict = re.search(rf"Model should perform well with {re.escape(ep)} as is: (\w+)", body)
    if not found or not verdict:
        return None
    parts, supported, total = map(int, found.groups())
    ops = re.search(r"Unsupported ops: ([^\n]*)", body)
    return {"partitions": parts, "supported_nodes": supported, "nodes": total,
            "coverage": round(supported / max(total, 1), 3), "verdict": verdict.group(1),
            "unsupported_ops": sorted(o.strip() for o in ops.group(1).split(",")) if ops else []}  # fmt: skip


def _recommended(verdicts: dict[str, dict], eps: tuple[str, ...]) -> str:
    """Of ``eps`` (one platform's), the one the checker rates best; CPU when none rates above NO."""
    rank = {"YES": 2, "MAYBE": 1, "NO": 0}
    best = max(eps, key=lambda ep: (rank.get(verdicts[ep]["verdict"], 0), verdicts[ep]["coverage"]))
    return best if rank.get(verdicts[best]["verdict"], 0) > 0 else "CPU"
