"""Flow ``baselines``: assignments of the isolated-metric baselines for every budget."""

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
from impq.pipeline import assign, baselines, prepare

__all__ = ["baselines_flow"]

PARAM_KEYS = (
    "model",
    "budgets",
    "eval.methods",
    "eval.seed",
    "eval.batch_size",
    "backends.group_size",
    "solver.precisions",
    "spqe.low_bits",
    "spqe.high_bits",
    "paths.artifacts",
)


@task(name="baseline-scores", **STAGE_TASK)
def score_and_assign(params: Params, key: dict) -> Files:
    """Score the blocks with every baseline and assign bits for every budget."""
    fault_point("baseline-scores")
    return snapshot(baselines.run(params))


@flow(name="baselines")
def baselines_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/baselines/<method>/<budget>.json`` for each baseline method."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "calibration": fingerprint_path(prepare.calibration_path(params)),
        "shapley": fingerprint_path(assign.shapley_input_path(params)),
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }
    with tracking.stage_run(params, "baselines", params_path) as run:
        run.log_params({"methods": baselines.baseline_methods(params), "budgets": params.budgets})
        paths = restore(score_and_assign(params, key))
        for path in paths:
            run.log_artifact(path, f"baselines/{path.parent.name}")
    return paths
