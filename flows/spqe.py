"""Flow ``spqe``: SPQE coalition sampling (its own flow: the sampling is where fan-out goes).

The sampling task is keyed by the declaration of the ``spqe`` stage
(:func:`impq.pipeline.stages.cache_key`), whose params are every ``spqe`` key but the
assembly options and the cache size (:data:`impq.pipeline.spqe.SAMPLING_EXCLUDES`). A
rerun with only ``spqe.alpha`` changed therefore hits the sampling task's cache (and
DVC reruns only the ``interactions`` stage, run by :mod:`flows.stage`): no model
evaluation.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from flows.common import STAGE_TASK, Files, fault_point, restore, snapshot
from flows.fanout import PrefectFanout
from impq import tracking
from impq.artifacts import read_json
from impq.config import Params
from impq.pipeline import spqe
from impq.pipeline.stages import STAGES, cache_key

__all__ = ["spqe_flow"]


@task(name="spqe-sampling", **STAGE_TASK)
def sample(params: Params, key: dict) -> Files:
    """Sample the permutations (SPQE coalition sampling), in chunks of
    ``runner.chunk_permutations`` mapped as tasks on ``params.runner``
    (:class:`~flows.fanout.PrefectFanout`).

    The stage checkpoints every chunk as it arrives, so a retry resumes where the failed
    attempt stopped and computes only the chunks it lacks.
    """
    fault_point("spqe-sampling")
    with PrefectFanout(params) as fanout:
        return snapshot(spqe.run(params, progress=False, fanout=fanout))


@flow(name="spqe")
def spqe_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/spqe/{samples.npz,sampling.json}``."""
    stage = STAGES["spqe"]
    with tracking.stage_run(params, stage.name, params_path) as run:
        paths = restore(sample(params, cache_key(stage, params)))
        tracking.record_stage(run, params, stage, paths)
        run.log_metrics(read_json(spqe.sampling_metrics_path(params)))  # evaluations, seconds
    return paths
