"""Flow ``compare``: the sweep's perplexities with bootstrap intervals, against the best
isolated baseline."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import (
    STAGE_TASK,
    Files,
    code_version,
    fault_point,
    fingerprint_path,
    params_subset,
    restore,
    snapshot,
)
from impq import tracking
from impq.config import Params
from impq.pipeline import compare

__all__ = ["compare_flow"]

PARAM_KEYS = ("compare", "backends.names", "eval.methods", "budgets", "paths")


@task(name="compare", **STAGE_TASK)
def compare_results(params: Params, key: dict) -> Files:
    """Intervals and ratios of every combination of the sweep."""
    fault_point("compare")
    return snapshot(compare.run(params))


@flow(name="compare")
def compare_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``results/results.{json,md}``, its plot and ``metrics/compare.json``."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "sweep": fingerprint_path(Path(params.paths.metrics) / "sweep"),
        "code": code_version(),
    }
    with tracking.stage_run(params, "compare", params_path) as run:
        paths = restore(compare_results(params, key))
        for path in paths:
            run.log_artifact(path, "results")
    return paths
