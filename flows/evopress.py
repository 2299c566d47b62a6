"""Flow ``evopress``: the EvoPress baseline for every budget, at SPQE's evaluation count."""

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
from impq.assignment import Assignment
from impq.config import Params
from impq.pipeline import evopress, prepare, spqe

__all__ = ["evopress_flow"]

PARAM_KEYS = (
    "model",
    "budgets",
    "eval.methods",
    "evopress",
    "spqe.backend",
    "spqe.group_size",
    "spqe.high_bits",
    "spqe.low_bits",
    "spqe.n_samples",
    "solver.precisions",
    "backends.group_size",
    "paths.artifacts",
    "paths.metrics",
)


@task(name="evopress-search", **STAGE_TASK)
def search(params: Params, key: dict) -> Files:
    """Run the EvoPress search of every budget on the model game."""
    fault_point("evopress-search")
    return snapshot(evopress.run(params))


@flow(name="evopress")
def evopress_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/evopress/<budget>.json`` and ``metrics/evopress.json``."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "calibration": fingerprint_path(prepare.calibration_path(params)),
        "samples": fingerprint_path(spqe.samples_path(params)),
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }
    with tracking.stage_run(params, "evopress", params_path) as run:
        run.log_params(params_subset(params, "evopress"))
        paths = restore(search(params, key))
        run.log_metrics(read_json(evopress.metrics_path(params)))
        for path in paths:
            if path.parent == evopress.output_dir(params):
                a = Assignment.load(path)
                with run.child(f"evopress/{a.budget_bits}", tags={"method": "evopress"}) as child:
                    child.log_metrics({"avg_bits": a.avg_bits, "stored_bytes": a.stored_bytes})
                    child.log_artifact(path, "evopress")
    return paths
