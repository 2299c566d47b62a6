"""Fan-out of a stage's units as mapped Prefect tasks on the runner ``params.runner`` picks:
SPQE's permutation chunks (:class:`PrefectFanout` as :class:`impq.pipeline.spqe.Fanout`)
and the sweep's combinations (:meth:`PrefectFanout.submit`).

With ``runner.name: local`` the tasks run one at a time in this process (one model); with
``ray`` on Ray workers through prefect-ray, ``runner.workers`` at a time, each worker
holding ``runner.cpus_per_worker`` CPUs and ``runner.gpus_per_worker`` GPUs. A worker
process keeps its model (and its quantized blocks) between tasks
(:func:`impq.pipeline.spqe.worker_game`), and the calibration ids are put in Ray's
object store once and handed to every task by reference. A sweep combination reads its
inputs (assignment, evaluation tokens) from the project folder, so sweep workers need it
at the same path (one machine, or a shared file system); SPQE workers need only the model
(and, for a calibrated ``spqe.backend``, the folder of its per-block databases at the same
path: a worker without it builds the database again).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from prefect import task
from prefect.futures import PrefectFuture, as_completed

from flows.common import UNCACHED, kill_point, runner_name, task_runner
from impq.config import Params
from impq.pipeline import spqe

__all__ = ["PrefectFanout", "chunk_task", "facts_task"]

log = logging.getLogger(__name__)

UNIT_TASK: dict[str, Any] = {**UNCACHED, "retries": 0}
"""Options of a fanned-out unit: its result is checkpointed by the stage, not by Prefect;
a failure is reported back (the stage keeps every other unit) instead of retried here."""


@task(name="spqe-facts", **UNIT_TASK)
def facts_task(spec: spqe.GameSpec, ids: torch.Tensor, recorded: spqe.Recorded) -> spqe.GameFacts:
    """Build this worker's game; its fingerprints and endpoint values."""
    return spqe.game_facts(spec, ids, recorded)


@task(name="spqe-chunk", task_run_name="permutations {first}-{last}", **UNIT_TASK)
def chunk_task(
    spec: spqe.GameSpec,
    ids: torch.Tensor,
    recorded: spqe.Recorded,
    seed: int,
    indices: np.ndarray,
    first: int,
    last: int,
) -> spqe.ChunkResult:
    """The walks of permutations ``indices`` (``first`` .. ``last``) on this worker's game."""
    kill_point("spqe-chunk")
    return spqe.evaluate_chunk(spec, ids, seed, indices, recorded)


class PrefectFanout:
    """:class:`impq.pipeline.spqe.Fanout` as Prefect tasks on ``params.runner``'s runner.

    Use it as a context manager: the task runner (and with Ray the connection to the
    cluster) lives as long as the ``with`` block.
    """

    def __init__(self, params: Params) -> None:
        self.params = params
        self.ray = runner_name(params) == "ray"
        self.in_flight = params.runner.workers if self.ray else 1
        self._runner: Any = None
        self._refs: dict[int, Any] = {}

    def __enter__(self) -> PrefectFanout:
        self._runner = task_runner(self.params).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        runner, self._runner, self._refs = self._runner, None, {}
        runner.__exit__(*exc)

    def _shared(self, value: Any) -> Any:
        """``value`` as sent to every task: with Ray a reference into the object store,
        put there once (prefect-ray resolves it on the worker)."""
        if not self.ray or value is None:
            return value
        import ray

        if id(value) not in self._refs:
            self._refs[id(value)] = (value, ray.put(value))
        return self._refs[id(value)][1]

    def _resources(self) -> AbstractContextManager[Any]:
        if not self.ray:
            return nullcontext()
        from prefect_ray.context import remote_options

        cfg = self.params.runner
        # max_retries=0: a chunk whose worker dies is reported lost; the stage keeps the
        # others and a rerun computes it (Ray would otherwise rerun it on a new worker).
        return remote_options(
            num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker, max_retries=0
        )

    def submit(
        self,
        unit: Any,
        parameters: dict[str, Any],
        wait_for: list[PrefectFuture[Any]] | None = None,
    ) -> PrefectFuture[Any]:
        """Submit the task ``unit`` with ``parameters`` (futures among them are resolved
        first) to this fan-out's runner, with a worker's resources under Ray."""
        if self._runner is None:
            raise RuntimeError("use PrefectFanout in a `with` block")
        with self._resources():
            return self._runner.submit(unit, parameters, wait_for=wait_for)

    def facts(
        self, spec: spqe.GameSpec, ids: torch.Tensor, recorded: spqe.Recorded
    ) -> spqe.GameFacts:
        """:func:`impq.pipeline.spqe.game_facts` as one task."""
        args = {"spec": spec, "ids": self._shared(ids), "recorded": self._shared(recorded)}
        result: spqe.GameFacts = self.submit(facts_task, args).result()
        return result

    def chunks(
        self,
        spec: spqe.GameSpec,
        ids: torch.Tensor,
        recorded: spqe.Recorded,
        seed: int,
        chunks: list[np.ndarray],
    ) -> Generator[spqe.ChunkResult | BaseException, None, None]:
        """One task per chunk, at most ``in_flight`` at a time; each result (or the error
        of a failed one) as it finishes."""
        shared = {"spec": spec, "ids": self._shared(ids), "recorded": self._shared(recorded)}
        queue = list(chunks)
        running: set[PrefectFuture[Any]] = set()
        try:
            while queue or running:
                while queue and len(running) < self.in_flight:
                    indices = queue.pop(0)
                    args = {
                        **shared,
                        "seed": seed,
                        "indices": indices,
                        "first": int(indices[0]),
                        "last": int(indices[-1]),
                    }
                    running.add(self.submit(chunk_task, args))
                future = next(as_completed(list(running)))
                running.discard(future)
                try:
                    yield future.result()
                except Exception as err:  # a worker died, or the chunk raised
                    yield err
        finally:
            for future in running:  # the consumer stopped early: let them finish unheard
                log.debug("not waiting for %s", future.task_run_id)
