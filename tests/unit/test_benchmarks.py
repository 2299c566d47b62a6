"""The benchmarks still run against the code they measure (a tiny model, seconds)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_ladder_regret_runs_and_prints_its_last_line() -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/ladder_regret.py", "--games", "1", "--blocks", "5"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    names = ("surrogate", "covariance", "shapley", "evopress", "seeded", "uniform")
    number = r"(\d+\.\d+)"
    match = re.fullmatch("ladder regret " + " ".join(f"{n}: {number}" for n in names), last)
    assert match, last
    regrets = dict(zip(names, (float(v) for v in match.groups()), strict=True))
    assert regrets["uniform"] > 0  # one precision for all is never the optimum here
