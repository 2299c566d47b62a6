"""Flow ``spqe``: Shapley values and interactions of the decoder blocks."""

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
from impq.pipeline import prepare, spqe

__all__ = ["spqe_flow"]

PARAM_KEYS = ("model", "spqe", "paths.artifacts", "paths.metrics")


@task(name="spqe-sampling", **STAGE_TASK)
def sample_and_assemble(params: Params, key: dict) -> Files:
    """Sample the permutations and assemble values and interactions.

    The stage checkpoints after every permutation, so a retry resumes where the failed
    attempt stopped.
    """
    fault_point("spqe-sampling")
    return snapshot(spqe.run(params, progress=False))


@flow(name="spqe")
def spqe_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/spqe/{shapley.npz,marginals.npy}`` and ``metrics/spqe.json``."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "calibration": fingerprint_path(prepare.calibration_path(params)),
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }
    with tracking.stage_run(params, "spqe", params_path) as run:
        run.log_params(params_subset(params, "spqe"))
        paths = restore(sample_and_assemble(params, key))
        run.log_metrics(read_json(spqe.metrics_path(params)))
        run.log_artifact(spqe.shapley_path(params), "spqe")
        run.log_artifact(spqe.marginals_path(params), "spqe")
    return paths
