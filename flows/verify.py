"""Flow ``verify``: the verified final pick for every budget, on held-back calibration data."""

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
from impq.artifacts import read_json
from impq.config import Params
from impq.pipeline import assign, baselines, evopress, interactions, prepare, verify

__all__ = ["verify_flow"]

PARAM_KEYS = (
    "model",
    "budgets",
    "eval.methods",
    "verify",
    "spqe",
    "solver.precisions",
    "backends.group_size",
    "paths.artifacts",
    "paths.metrics",
)


@task(name="verified-pick", **STAGE_TASK)
def pick(params: Params, key: dict) -> Files:
    """Score every budget's candidates on the held-back sequences; keep the lowest."""
    fault_point("verified-pick")
    return snapshot(verify.run(params))


@flow(name="verify")
def verify_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/verify/<budget>.json`` and ``metrics/verify.json``."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "calibration": fingerprint_path(prepare.calibration_path(params)),
        "objective": fingerprint_path(interactions.objective_path(params, verify.REFERENCE)),
        "assignments": [
            fingerprint_path(assign.output_dir(params)),
            fingerprint_path(baselines.output_dir(params)),
            fingerprint_path(evopress.output_dir(params)),
        ],
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }
    with tracking.stage_run(params, "verify", params_path) as run:
        run.log_params(params_subset(params, "verify"))
        paths = restore(pick(params, key))
        run.log_metrics(read_json(verify.metrics_path(params)))
        for path in paths:
            if path.parent == verify.output_dir(params):
                run.log_artifact(path, "verify")
    return paths
