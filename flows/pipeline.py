"""Flow ``impq-pipeline``: the whole DVC pipeline as one schedulable Prefect flow.

It runs ``dvc repro`` in the repository, so DVC decides what is stale and each stage
runs the way ``dvc.yaml`` says (``impq <stage>``, i.e. the stage's own flow). Every stage
of one pipeline run logs under one MLflow parent run, keyed by this flow run's id.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from prefect import flow, get_run_logger, runtime, task

from impq.tracking import RUN_GROUP_ENV

__all__ = ["dvc_repro", "pipeline_flow"]


@task(name="dvc-repro", retries=1, retry_delay_seconds=30)
def dvc_repro(repo: str, targets: list[str], force: bool, run_group: str) -> str:
    """Run ``dvc repro`` in ``repo``; return its output, raise with its tail on failure."""
    cmd = ["dvc", "repro", *targets, *(["--force"] if force else [])]
    env = {**os.environ, RUN_GROUP_ENV: run_group}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    get_run_logger().info("%s\n%s", " ".join(cmd), proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc.stdout


@flow(name="impq-pipeline")
def pipeline_flow(repo: str = ".", targets: list[str] | None = None, force: bool = False) -> str:
    """Reproduce the pipeline in ``repo`` (all stages, or ``targets``); return DVC's output."""
    run_group = str(runtime.flow_run.id or "") or "manual"
    return dvc_repro(str(Path(repo).resolve()), list(targets or []), force, run_group)
