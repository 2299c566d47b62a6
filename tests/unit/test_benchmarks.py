"""The benchmarks still run against the code they measure (a tiny model, seconds)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY = ("--tiny", "llama", "--tiny-layers", "4", "--configs", "3", "--samples", "2")


def test_spqe_throughput_runs_and_its_three_arms_agree() -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/spqe_throughput.py", *TINY],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup_vs_forward: \d+\.\d+ speedup_vs_naive: \d+\.\d+", lines[-1])
    diff = next(x for x in lines if x.startswith("max relative difference"))
    cached_vs_forward, vs_naive = (float(v) for v in re.findall(r"\d\.\d+e[-+]\d+", diff))
    assert cached_vs_forward < 1e-5 and vs_naive < 1e-5  # the same NLL three ways
    assert any(x.startswith("ceiling of any exact evaluator") for x in lines)
