"""Orchestration overhead of the pipeline: ``make repro`` against the same work in one process.

Clones the repository's committed HEAD twice into a temporary folder. In the first clone
it runs what ``make repro`` runs (``python -m flows.server -- dvc repro``: one Prefect
server, one process per stage, MLflow runs, DVC's hashing and lock); in the second it runs
every declared stage's work (:data:`impq.pipeline.stages.STAGES`, in pipeline order) in
one Python process, without Prefect, MLflow or DVC. It prints both wall times and the
overhead share, ``1 - work / pipeline``: the issue's target is under 15%.

    PYTHONPATH=. python benchmarks/orchestration_overhead.py            # embedded default
    PYTHONPATH=. python benchmarks/orchestration_overhead.py --keep DIR  # keep the clones
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IN_PROCESS = """
import logging, sys, time
from impq.pipeline.params import load_params
from impq.pipeline.stages import STAGES

logging.basicConfig(level=logging.WARNING)
params = load_params("params.yaml")
for stage in STAGES.values():
    start = time.perf_counter()
    for unit in stage.units(params, {}):
        stage.run(params, **unit)
    print(f"{stage.name:13s} {time.perf_counter() - start:8.1f} s", flush=True)
"""


def _clone(where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(REPO), str(where)], check=True)
    return where


def _env() -> dict[str, str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)  # each clone imports its own impq (python -m from its root)
    env.pop("PREFECT_RESULTS_LOCAL_STORAGE_PATH", None)  # each clone its own result cache
    return env


def _timed(cmd: list[str], cwd: Path, log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}); see {log}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="impq-overhead-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        piped = _clone(root / "pipeline")
        pipeline = _timed(
            [sys.executable, "-m", "flows.server", "--", "dvc", "repro"],
            piped,
            root / "pipeline.log",
        )
        print(f"pipeline (dvc repro under one Prefect server): {pipeline:8.1f} s", flush=True)
        direct = _clone(root / "in-process")
        work = _timed([sys.executable, "-c", IN_PROCESS], direct, root / "in-process.log")
        print((root / "in-process.log").read_text(), end="")
        print(f"work (every stage in one process, no Prefect, MLflow or DVC): {work:8.1f} s")
        print(f"orchestration overhead: {1 - work / pipeline:.1%} of the pipeline's wall time")


if __name__ == "__main__":
    main()
