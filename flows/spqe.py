"""Flows ``spqe`` and ``interactions``: SPQE coalition sampling, then interaction assembly.

The sampling task is keyed by every ``spqe`` param but the assembly options
(:data:`impq.pipeline.spqe.SAMPLING_EXCLUDES`: ``alpha``, ``min_pair_samples``,
``interaction_fdr``); the assembly task also by them. A rerun with only ``spqe.alpha``
changed therefore hits the sampling task's cache (and DVC reruns only the
``interactions`` stage): no model evaluation.
"""

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
from flows.fanout import PrefectFanout
from impq import tracking
from impq.artifacts import read_json
from impq.config import Params
from impq.pipeline import interactions, prepare, spqe

__all__ = ["interactions_flow", "spqe_flow"]

PARAM_KEYS = ("model", "spqe", "paths.artifacts", "paths.metrics")


def sampling_params(params: Params) -> dict:
    """The params the samples depend on: :data:`PARAM_KEYS` without the assembly options."""
    subset = params_subset(params, *PARAM_KEYS)
    subset["spqe"] = {k: v for k, v in subset["spqe"].items() if k not in spqe.SAMPLING_EXCLUDES}
    return subset


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


@task(name="interaction-assembly", **STAGE_TASK)
def assemble(params: Params, key: dict) -> Files:
    """Assemble values, interactions and their SEs from the samples."""
    fault_point("interaction-assembly")
    return snapshot(interactions.run(params))


def _sampling_key(params: Params) -> dict:
    return {
        "params": sampling_params(params),
        "calibration": fingerprint_path(prepare.calibration_path(params)),
        "model": fingerprint_path(params.model.source) or params.model.source,
        "code": code_version(),
    }


@flow(name="spqe")
def spqe_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/spqe/{samples.npz,sampling.json}``."""
    with tracking.stage_run(params, "spqe", params_path) as run:
        run.log_params({"spqe": sampling_params(params)["spqe"]})
        paths = restore(sample(params, _sampling_key(params)))
        run.log_metrics(read_json(spqe.sampling_metrics_path(params)))
        run.log_artifact(spqe.samples_path(params), "spqe")
    return paths


@flow(name="interactions")
def interactions_flow(params: Params, params_path: str = "params.yaml") -> list[Path]:
    """Write ``artifacts/spqe/{shapley.npz,marginals.npy,objectives/}`` and
    ``metrics/spqe.json``."""
    key = {
        "params": params_subset(params, *PARAM_KEYS),
        "samples": fingerprint_path(spqe.samples_path(params)),
        "code": code_version(),
    }
    with tracking.stage_run(params, "interactions", params_path) as run:
        run.log_params(params_subset(params, "spqe"))
        paths = restore(assemble(params, key))
        run.log_metrics(read_json(spqe.metrics_path(params)))
        run.log_artifact(spqe.shapley_path(params), "spqe")
        run.log_artifact(spqe.marginals_path(params), "spqe")
        for path in sorted(interactions.objectives_dir(params).glob("*.npz")):
            run.log_artifact(path, "spqe/objectives")
    return paths
