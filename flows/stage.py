"""The one Prefect flow of every declared stage (:data:`impq.pipeline.stages.STAGES`).

A stage run is a flow named after the stage. Each of its units (one, or one per method
and budget for ``assign``) is a task run named after the stage's task, cached on
:func:`impq.pipeline.stages.cache_key`, retried, and persisted as a snapshot of the
files it wrote, which the flow writes back (:func:`flows.common.restore`), so a rerun
with the same key skips the work and still puts every artifact in place. A stage
declared ``cached=False`` (the export) is retried but neither cached nor persisted. The
flow logs the stage's MLflow run (:func:`impq.tracking.record_stage`).

Stages with a flow of their own (``spqe``, ``sweep``: :attr:`Stage.flow`) are run by
:func:`run_stage` through that flow instead.
"""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from prefect import Flow, flow, task
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.common import (
    DETERMINISTIC,
    STAGE_TASK,
    UNCACHED,
    Files,
    fault_point,
    restore,
    retry_unless,
    snapshot,
    task_runner,
)
from flows.env import EMBEDDED_ENV
from impq import tracking
from impq.config import Params
from impq.pipeline.stages import STAGES, Stage, cache_key

__all__ = ["run_stage", "stage_flow", "stage_task"]


@task(**STAGE_TASK)
def stage_task(params: Params, key: dict, stage: str, unit: dict[str, Any]) -> Files:
    """Run one unit of ``stage``'s work; return the bytes of the files it wrote."""
    declared = STAGES[stage]
    fault_point(declared.task)
    result = declared.run(params, **unit)
    if not declared.cached:  # nothing to persist: the files stay where the work put them
        return {}
    return snapshot(declared.written(params, result))


def _task_for(stage: Stage) -> Any:
    """:func:`stage_task` named after the stage's task, with the stage's task options."""
    options: dict[str, Any] = {"name": stage.task}
    if not stage.cached:
        options.update(UNCACHED)
    if stage.final_errors:
        options["retry_condition_fn"] = retry_unless(DETERMINISTIC + stage.error_types())
    return stage_task.with_options(**options)


@flow
def stage_flow(
    params: Params,
    params_path: str = "params.yaml",
    stage: str = "prepare",
    options: dict[str, Any] | None = None,
) -> list[Path]:
    """Run every unit of ``stage``; log its MLflow run; return the files written."""
    declared = STAGES[stage]
    run_task = _task_for(declared)
    written: list[Path] = []
    with tracking.stage_run(params, stage, params_path) as run:
        for unit in declared.units(params, options or {}):
            key = cache_key(declared, params, unit)
            files = run_task.with_options(task_run_name=_run_name(declared, unit))(
                params, key, stage, unit
            )
            # an uncached stage's outputs may be a whole model: only its metrics are named
            written += restore(files) if declared.cached else declared.out_paths(params, "metrics")
        tracking.record_stage(run, params, declared, written)
    return written


def _run_name(stage: Stage, unit: dict[str, Any]) -> str:
    return "/".join([stage.task, *(str(v) for v in unit.values())])


def flow_of(stage: Stage) -> Flow[..., Any]:
    """The flow that runs ``stage``: its own, or :func:`stage_flow` named after it."""
    if stage.flow is not None:
        module, name = stage.flow.split(":")
        own: Flow[..., Any] = getattr(importlib.import_module(module), name)
        return own.with_options(task_runner=task_runner())
    return stage_flow.with_options(name=stage.name, task_runner=task_runner())


def run_stage(
    name: str, params: Params, params_path: str = "params.yaml", **options: Any
) -> list[Path]:
    """Run stage ``name`` through its flow; return the files it wrote."""
    stage = STAGES[name]
    run = flow_of(stage)
    args = (params, params_path) if stage.flow is not None else (params, params_path, name, options)
    with _heartbeats():
        written: Any = run(*args)
    return list(written)


def _heartbeats() -> AbstractContextManager[Any]:
    """No flow-run heartbeats against the server :mod:`flows.server` started for this run.

    Heartbeats only feed automations that mark silent runs crashed, and that server has
    none and stops with the run. They cost every flow run up to 1 s at its end (Prefect
    3.8's heartbeat thread sleeps in 1-s steps and the flow joins it). Against any other
    server they stay on.
    """
    api = os.environ.get("PREFECT_API_URL")
    if api is None or os.environ.get(EMBEDDED_ENV) != api:
        return nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
