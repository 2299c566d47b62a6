"""Flow ``report``: plots of the SPQE result, as DVC plots and MLflow artifacts."""

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
from impq.pipeline import report, spqe

__all__ = ["report_flow"]

PARAM_KEYS = ("paths.plots",)


@task(name="report-plots", **STAGE_TASK)
def make_plots(params: Params, key: dict) -> Files:
    """Shapley bars, their CSV and the interaction heatmap."""
    fault_point("report-plots")
    return snapshot(report.run(params))


@flow(name="report")
def report_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write the SPQE plots under ``plots/``; return their paths."""
    shapley = spqe.shapley_path(params)
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "shapley": fingerprint_path(shapley),
        "code": code_version(),
    }
    with tracking.stage_run(params, "report", params_path) as run:
        paths = restore(make_plots(params, key))
        for path in paths:
            run.log_artifact(path, "plots")
        run.log_artifact(shapley, "spqe")
    return paths
