"""Flow ``evaluate``: WikiText-2 perplexity of the unquantized model."""

from __future__ import annotations

from typing import Any

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
from impq.pipeline import evaluate, prepare

__all__ = ["evaluate_flow"]

PARAM_KEYS = ("model", "eval.seqlen", "eval.batch_size", "eval.max_windows", "paths.metrics")


@task(name="evaluation", **STAGE_TASK)
def evaluate_float(params: Params, key: dict) -> tuple[dict[str, Any], Files]:
    """Perplexity of the float model, and the metrics file it wrote."""
    fault_point("evaluation")
    result = evaluate.run(params)
    return result.as_metrics(), snapshot([evaluate.float_metrics_path(params)])


@flow(name="evaluate")
def evaluate_flow(params: Params, params_path: str = "params.yaml") -> dict[str, Any]:
    """Write ``metrics/float.json``; return its metrics."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "tokens": fingerprint_path(prepare.eval_tokens_path(params)),
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }
    with tracking.stage_run(params, "evaluate", params_path) as run:
        run.log_params(params_subset(params, *PARAM_KEYS))
        metrics, files = evaluate_float(params, key)
        for path in restore(files):
            run.log_artifact(path, "metrics")
        run.log_metrics({f"float.{k}": v for k, v in metrics.items()})
    return metrics
