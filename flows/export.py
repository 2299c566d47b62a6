"""Flow ``export``: write the chosen mixed-precision model for its runtime and check it.

One task does the stage's work (:func:`impq.pipeline.export.run`). Its result is not
cached or persisted: the exported model can be gigabytes, and DVC already decides whether
the stage is up to date. It is retried only on errors that may pass (not on a failed
check, an over-budget model or missing inputs, which a retry would only repeat).
"""

from __future__ import annotations

from typing import Any

from prefect import Task, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from flows.common import fault_point, params_subset
from impq import tracking
from impq.backends import UnsupportedError
from impq.backends.base import OverBudgetError
from impq.config import Params
from impq.export import ExportCheckError
from impq.pipeline import export

__all__ = ["export_flow"]

PARAM_KEYS = (
    "model",
    "export",
    "budgets",
    "backends.group_size",
    "eval.seqlen",
    "eval.batch_size",
    "eval.max_windows",
    "paths.metrics",
)
FINAL_ERRORS = (ExportCheckError, OverBudgetError, UnsupportedError, FileNotFoundError)
"""Failures a retry would repeat."""


def _may_pass(task: Task[..., Any], run: TaskRun, state: State[Any]) -> bool:
    """Retry unless the task failed with one of :data:`FINAL_ERRORS`."""
    try:
        state.result()
    except FINAL_ERRORS:
        return False
    except Exception:
        return True
    return True


@task(
    name="model-export",
    retries=2,
    retry_delay_seconds=[1, 5],
    retry_condition_fn=_may_pass,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def export_model(params: Params) -> dict[str, Any]:
    """Export and check the model; return the metrics of ``metrics/export.json``."""
    fault_point("model-export")
    return export.run(params)


@flow(name="export")
def export_flow(params: Params, params_path: str = "params.yaml") -> dict[str, Any]:
    """Write ``export.out`` and ``metrics/export.json``; return the metrics."""
    with tracking.stage_run(params, "export", params_path) as run:
        run.log_params(params_subset(params, *PARAM_KEYS))
        metrics = export_model(params)
        run.log_metrics(metrics)
        run.log_artifact(export.metrics_path(params), "metrics")
    return metrics
