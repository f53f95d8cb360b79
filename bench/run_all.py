"""Run every benchmark in bench/ in turn; each prints what it measured (copy into RESULTS.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = sorted(Path(__file__).parent.glob("bench_*.py"))

if __name__ == "__main__":
    for script in BENCHES:
        print(f"\n## {script.name}\n", flush=True)
        subprocess.run([sys.executable, str(script), *sys.argv[1:]], check=True)
