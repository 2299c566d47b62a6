"""The one sampling driver: walks computed in chunks, checkpointed, stopped on tolerance.

Every walk sampler runs through :func:`drive_walks`: the estimators' own
:meth:`~impq.estimate.permutation.PermutationWalk.sample` (one walk per chunk, in this
process) and the ``spqe`` stage (:func:`impq.pipeline.spqe.run`, chunks on a local,
Prefect or Ray fan-out). Walk ``k`` of a run depends on the run seed and ``k`` alone, so
chunks may finish in any order: the driver keeps what has arrived, checkpoints it after
every chunk, and stops at the first prefix of the run whose standard errors meet the
tolerance, exactly where a one-walk-at-a-time run stops. A resumed run computes only the
walks the checkpoint lacks and ends with the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from impq.estimate.checkpoint import Checkpoint

__all__ = [
    "ChunkOutcome",
    "ChunksLostError",
    "DriverRun",
    "RunChunks",
    "StoppingPoint",
    "drive_walks",
    "plan_chunks",
]

log = logging.getLogger(__name__)


class ChunkOutcome(Protocol):
    """What a chunk's computation returns: the walks of the walk numbers ``indices``."""

    @property
    def indices(self) -> np.ndarray:
        """(c,) walk numbers of the chunk."""
        ...

    @property
    def walks(self) -> np.ndarray:
        """(c, steps) values of their walks, in the order of ``indices``."""
        ...


RunChunks = Callable[[list[np.ndarray]], Iterator["ChunkOutcome | BaseException"]]
"""The injected map: computes every chunk of walk numbers (on workers or here) and yields
each outcome as it finishes, or the error of a chunk that failed. The driver closes the
iterator (when it is a generator) once it has what it needs: chunks not started by then
need not run."""

StoppingPoint = Callable[[np.ndarray, np.ndarray, np.ndarray, int], "int | None"]
"""``(orders, walks, endpoints, start) -> d``: the first count ``d > start`` of walks of
the prefix ``orders``/``walks`` at which the run stops on its tolerance, or None."""


class ChunksLostError(RuntimeError):
    """Some chunks failed (a worker died); the others are checkpointed: rerun to fill in."""


@dataclass(frozen=True)
class DriverRun:
    """What the driver sampled.

    Attributes:
        samples: ``permutations`` (M, T) walk orders, ``walks`` (M, steps),
            ``endpoints`` (2,) and ``max_permutations`` (scalar): the raw samples.
        resumed: walks taken from the checkpoint instead of computed.
        endpoints_computed: whether the endpoints were computed in this run (not resumed).
    """

    samples: dict[str, np.ndarray]
    resumed: int
    endpoints_computed: bool


def plan_chunks(missing: list[int], size: int) -> list[np.ndarray]:
    """``missing`` walk numbers, in order, in chunks of at most ``size``."""
    if size < 1:
        raise ValueError(f"a chunk holds at least one walk, got size {size}")
    return [np.array(missing[i : i + size], dtype=np.int64) for i in range(0, len(missing), size)]


def drive_walks(
    orders: np.ndarray,
    steps: int,
    endpoints: Callable[[], np.ndarray],
    run_chunks: RunChunks,
    *,
    chunk_size: int = 1,
    stopping_point: StoppingPoint | None = None,
    checkpoint: Checkpoint | None = None,
    on_chunk: Callable[[ChunkOutcome], None] | None = None,
    progress: bool = False,
    desc: str = "walks",
) -> DriverRun:
    """Sample the walks ``orders`` (every walk the budget buys) until done or stopped.

    Args:
        orders: (max walks, T) the run's walk orders; walk ``k`` is ``orders[k]``.
        steps: values one walk yields.
        endpoints: computes the values of the two shared endpoints; called only when
            the checkpoint does not hold them.
        run_chunks: the injected map (:data:`RunChunks`).
        chunk_size: walks per chunk.
        stopping_point: the tolerance rule (:data:`StoppingPoint`); None: no early stop.
        checkpoint: where the walks done are saved after every chunk, and resumed from.
        on_chunk: called with every outcome that arrives (metrics, logging).
        progress: show a progress bar.
        desc: the progress bar's label.

    Raises:
        ChunksLostError: some chunks failed; the others are checkpointed.
    """
    max_walks = len(orders)
    ends, done = _resume(checkpoint, orders, steps)
    resumed = len(done)
    computed = ends is None
    if ends is None:
        ends = np.asarray(endpoints())
    prefix = _prefix_length(done)
    stop = _stop(stopping_point, orders, done, ends, prefix, 0)
    checked = prefix
    lost: list[str] = []
    bar = tqdm(total=max_walks, initial=len(done), desc=desc, unit="walk", disable=not progress)
    if stop is None:
        missing = [k for k in range(max_walks) if k not in done]
        outcomes = run_chunks(plan_chunks(missing, chunk_size))
        try:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    log.error("a chunk of walks was lost: %s", outcome)
                    lost.append(f"{type(outcome).__name__}: {outcome}")
                    continue
                done.update(zip(np.asarray(outcome.indices).tolist(), outcome.walks, strict=True))
                if on_chunk is not None:
                    on_chunk(outcome)
                if checkpoint is not None:
                    _save(checkpoint, orders, done, ends)
                bar.update(len(outcome.indices))
                prefix = _prefix_length(done)
                stop = _stop(stopping_point, orders, done, ends, prefix, checked)
                checked = prefix
                if stop is not None:
                    break
        finally:
            close = getattr(outcomes, "close", None)
            if close is not None:
                close()  # the rest is not needed: chunks not started are not run
    bar.close()
    if lost:
        where = f" in {checkpoint.path}" if checkpoint is not None else ""
        raise ChunksLostError(
            f"{len(lost)} chunk(s) of walks failed ({lost[0]}); the {len(done)} walks done "
            f"are checkpointed{where}: rerun to compute only the missing ones"
        )
    count = stop if stop is not None else max_walks
    walks = np.stack([done[k] for k in range(count)]) if count else np.empty((0, steps))
    samples = {
        "permutations": orders[:count],
        "walks": walks,
        "endpoints": ends,
        "max_permutations": np.array(max_walks),
    }
    return DriverRun(samples=samples, resumed=resumed, endpoints_computed=computed)


def _prefix_length(done: dict[int, np.ndarray]) -> int:
    count = 0
    while count in done:
        count += 1
    return count


def _stop(
    rule: StoppingPoint | None,
    orders: np.ndarray,
    done: dict[int, np.ndarray],
    ends: np.ndarray,
    prefix: int,
    start: int,
) -> int | None:
    """The stopping point among the first ``prefix`` walks, past ``start`` (walks up to
    ``start`` were checked before)."""
    if rule is None or prefix <= start:
        return None
    walks = np.stack([done[k] for k in range(prefix)])
    return rule(orders[:prefix], walks, ends, start)


def _save(
    checkpoint: Checkpoint, orders: np.ndarray, done: dict[int, np.ndarray], ends: np.ndarray
) -> None:
    order = np.array(sorted(done), dtype=np.int64)
    checkpoint.save(
        {
            "indices": order,
            "permutations": orders[order],
            "walks": np.stack([done[k] for k in order.tolist()]),
            "endpoints": np.asarray(ends),
        }
    )


def _resume(
    checkpoint: Checkpoint | None, orders: np.ndarray, steps: int
) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
    """(endpoints, walk number -> walk) of the checkpoint; (None, {}) when there is none
    or it does not match this run (other walk orders: another seed, ladder or budget)."""
    if checkpoint is None:
        return None, {}
    saved = checkpoint.load()
    if saved is None:
        return None, {}
    perms, walks = saved["permutations"], saved["walks"]
    indices = saved.get("indices", np.arange(len(perms)))  # checkpoints of one-by-one runs
    if (
        perms.ndim != 2
        or len(indices) != len(perms)
        or (len(indices) and (indices.min() < 0 or indices.max() >= len(orders)))
        or not np.array_equal(perms, orders[indices])
        or walks.shape != (len(perms), steps)
    ):
        log.warning(
            "checkpoint %s does not match this run (other walks); starting over", checkpoint.path
        )
        return None, {}
    log.info("resuming from %s: %d walks done", checkpoint.path, len(perms))
    return saved["endpoints"], dict(zip(indices.tolist(), walks, strict=True))
