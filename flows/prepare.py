"""Flow ``prepare``: the calibration set and the tokenized evaluation split."""

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
from impq.pipeline import prepare

__all__ = ["prepare_flow"]

PARAM_KEYS = ("model.source", "model.gguf_file", "data", "paths.artifacts")


@task(name="calibration-prep", **STAGE_TASK)
def prepare_data(params: Params, key: dict) -> Files:
    """Tokenize the evaluation split and draw the calibration set."""
    fault_point("calibration-prep")
    return snapshot(prepare.run(params))


@flow(name="prepare")
def prepare_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/data/{calibration,eval_tokens}.safetensors``; return their paths."""
    root = params.data.resolved_root()
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "data": fingerprint_path(root) if root else "hub",
        "tokenizer": fingerprint_path(Path(params.model.source) / "tokenizer.json"),
        "code": code_version(),
    }
    with tracking.stage_run(params, "prepare", params_path) as run:
        run.log_params(params_subset(params, *PARAM_KEYS))
        paths = restore(prepare_data(params, key))
        run.log_metrics({f"bytes.{p.stem}": p.stat().st_size for p in paths})
    return paths
