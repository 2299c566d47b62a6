"""Stage ``spqe``: coalition sampling of the decoder blocks' game, resumable.

Reads the calibration set, builds the model game (blocks at ``spqe.high_bits`` or
``spqe.low_bits`` through ``spqe.backend``), samples ``spqe.permutations`` permutations
and writes their raw walks (``spqe.walks``: prefix or SII walks) to
``artifacts/spqe/samples.npz`` (with the blocks' parameter counts and the provenance) and
the evaluation metrics to ``sampling.json``. Values and every method's interaction model
are assembled from them by the ``interactions`` stage (:mod:`impq.pipeline.interactions`),
so a change of an assembly option (:data:`SAMPLING_EXCLUDES`) samples nothing again:
nothing here depends on them. After every permutation the work done so far is
checkpointed; rerunning with the same params, model and calibration resumes and ends
with the same bytes as an uninterrupted run.

Outside DVC (which deletes a stage's outputs before running it), samples already at
``samples.npz`` from the same model, calibration and quantizer are reused: their
coalitions are answered from the file (:class:`~impq.estimate.recorded.RecordedGame`), so
switching ``spqe.walks`` from ``prefix`` to ``sii`` with the same seed evaluates only the
``S ∪ {b}`` coalitions, ``M·(L - 1)`` of them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from impq.artifacts import atomic_path, fingerprint, read_tensors, write_json
from impq.config import SPQE_ASSEMBLY_OPTIONS, SPQE_SAMPLING_EXCLUDES, ModelConfig, Params
from impq.estimate import WALK_SAMPLERS, Checkpoint
from impq.estimate.objectives import objective_methods
from impq.estimate.permutation import PermutationWalk, run_seed, seeded_permutations
from impq.estimate.recorded import RecordedGame, recorded_coalitions
from impq.estimate.result import write_npz
from impq.game import Game, ModelGame, weight_quantizer
from impq.models import block_param_counts, load_model
from impq.pipeline.paths import (
    calibration_path,
    marginals_path,
    samples_path,
    sampling_metrics_path,
    shapley_path,
)
from impq.pipeline.paths import spqe_checkpoint_path as checkpoint_path
from impq.pipeline.paths import spqe_metrics_path as metrics_path

__all__ = [
    "ASSEMBLY_OPTIONS",
    "SAMPLING_EXCLUDES",
    "ChunkResult",
    "ChunksLostError",
    "Fanout",
    "GameFacts",
    "GameSpec",
    "LocalFanout",
    "checkpoint_path",
    "evaluate_chunk",
    "game_facts",
    "load_samples",
    "marginals_path",
    "metrics_path",
    "run",
    "samples_path",
    "sampling_metrics_path",
    "shapley_path",
    "worker_game",
    "worker_id",
]

log = logging.getLogger(__name__)

ASSEMBLY_OPTIONS = SPQE_ASSEMBLY_OPTIONS
"""``spqe`` keys only the assembly of the interaction models reads (stage ``interactions``)."""

SAMPLING_EXCLUDES = SPQE_SAMPLING_EXCLUDES
"""``spqe`` keys the samples do not depend on (:data:`impq.config.SPQE_SAMPLING_EXCLUDES`)."""

SAME_GAME = (
    "model_fingerprint",
    "calibration_fingerprint",
    "calibration_shape",
    "backend",
    "high_bits",
    "low_bits",
    "group_size",
)
"""Provenance keys on which a coalition's value depends: samples that agree on all of
them are reused."""


@dataclass(frozen=True)
class GameSpec:
    """What a worker needs, beside the calibration ids, to build the sampled game."""

    model: ModelConfig
    backend: str
    group_size: int
    high_bits: int
    low_bits: int
    batch_size: int | None
    cache_mb: float | None
    walks: str

    @classmethod
    def from_params(cls, params: Params) -> GameSpec:
        """The game of ``params.model`` and ``params.spqe``; a local model path made
        absolute (a Ray worker runs in a folder of its own)."""
        cfg = params.spqe
        model = params.model
        if Path(model.source).exists():
            model = model.model_copy(update={"source": str(Path(model.source).resolve())})
        return cls(
            model, cfg.backend, cfg.group_size, cfg.high_bits, cfg.low_bits,
            cfg.batch_size, cfg.cache_mb, cfg.walks,
        )  # fmt: skip

    @property
    def estimator(self) -> PermutationWalk:
        """A walker of this game's walk kind (coalitions, steps per permutation)."""
        return WALK_SAMPLERS[self.walks]()


@dataclass(frozen=True)
class GameFacts:
    """What the sampling run needs to know of the game, measured on a worker."""

    fingerprint: str
    model_fingerprint: str
    calibration_fingerprint: str
    n_players: int
    block_params: list[int]
    endpoints: np.ndarray
    """Values of the empty and the full coalition."""
    evaluations: int
    """Model evaluations spent on the endpoints (0 when answered from recorded samples)."""
    block_evaluations: int
    """Decoder-block passes those evaluations took."""
    recorded_answers: int
    """Endpoints answered from the recorded samples instead."""
    setup_seconds: float
    state_cache_mb: float
    same_game: bool
    """The recorded samples offered are of this game: every chunk may be answered from them."""


@dataclass(frozen=True)
class ChunkResult:
    """The walks of one chunk of permutations, computed on a worker."""

    indices: np.ndarray
    walks: np.ndarray
    evaluations: int
    block_evaluations: int
    recorded_answers: int
    seconds: float
    worker: str
    """``<host>:<pid>`` of the process that computed it (:func:`worker_id`)."""
    game_builds: int
    """Games that process had built by then: 1 when it loaded its model once."""


Recorded = tuple[np.ndarray, np.ndarray, dict[str, Any]] | None
"""Coalitions, values and provenance of earlier samples (answered without the model when
they are of the same game, see :data:`SAME_GAME`)."""

_WORKER_GAMES: dict[str, tuple[ModelGame, float]] = {}
"""This process's games (one at a time): built once per worker, reused by every chunk."""
_GAME_BUILDS = 0
"""Games this process built (each loads the model once)."""


def _source_stamp(cfg: ModelConfig) -> str:
    """Names, sizes and modification times of a local model's files: a model rewritten
    in place is loaded again. A hub id stands for itself."""
    root = Path(cfg.source)
    if not root.exists():
        return cfg.source
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return fingerprint(*(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files))


def worker_id() -> str:
    """``<host>:<pid>`` of this process, as chunk results name their worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_game(spec: GameSpec, ids: torch.Tensor) -> tuple[ModelGame, float]:
    """This process's game of ``spec`` on ``ids`` and the seconds its setup took.

    The model is loaded and its blocks quantized to both bit widths once per process
    (a Ray worker, or the stage itself with the local runner); every chunk reuses them.
    """
    key = fingerprint(repr(spec), _source_stamp(spec.model), fingerprint(ids))
    if key not in _WORKER_GAMES:
        global _GAME_BUILDS
        _WORKER_GAMES.clear()  # one model per worker
        _GAME_BUILDS += 1
        t0 = time.perf_counter()
        game = ModelGame(
            load_model(spec.model),
            ids,
            weight_quantizer(spec.backend, spec.group_size),
            high_bits=spec.high_bits,
            low_bits=spec.low_bits,
            batch_size=spec.batch_size,
            progress=False,
            cache_mb=spec.cache_mb,
        )
        _WORKER_GAMES[key] = (game, time.perf_counter() - t0)
    return _WORKER_GAMES[key]


def _game_provenance(spec: GameSpec, ids: torch.Tensor, game: ModelGame) -> dict[str, Any]:
    """The :data:`SAME_GAME` facts of ``game``."""
    return {
        "model_fingerprint": game.model_fingerprint,
        "calibration_fingerprint": game.calibration_fingerprint,
        "calibration_shape": list(ids.shape),
        "backend": spec.backend,
        "high_bits": spec.high_bits,
        "low_bits": spec.low_bits,
        "group_size": spec.group_size,
    }


_WORKER_RECORDS: dict[tuple[int, str], RecordedGame] = {}
"""This process's recorded game (one at a time): a coalition one of its chunks evaluated
is answered from memory in its later chunks, as in a run on one process."""


def _sampled(game: ModelGame, recorded: Recorded) -> Game:
    if recorded is None:
        return game
    key = (id(game), fingerprint(recorded[0].tobytes(), recorded[1].tobytes()))
    if key not in _WORKER_RECORDS:
        _WORKER_RECORDS.clear()
        _WORKER_RECORDS[key] = RecordedGame(game, recorded[0], recorded[1])
    return _WORKER_RECORDS[key]


def game_facts(spec: GameSpec, ids: torch.Tensor, recorded: Recorded = None) -> GameFacts:
    """Build (or reuse) this process's game; its fingerprints and endpoint values.

    ``recorded`` samples are used (here and, the facts say, in every chunk) only when
    they are of this game.
    """
    game, setup_s = worker_game(spec, ids)
    if recorded is not None:
        mine = _game_provenance(spec, ids, game)
        differs = [k for k in SAME_GAME if recorded[2].get(k) != mine[k]]
        if differs:
            log.info("not reusing earlier samples: another game (%s differ)", ", ".join(differs))
            recorded = None
    before, blocks = game.n_evaluations, game.n_block_evaluations
    endpoints = _sampled(game, recorded)(
        np.array([np.zeros(game.n_players, bool), np.ones(game.n_players, bool)])
    )
    return GameFacts(
        fingerprint=game.fingerprint(),
        model_fingerprint=game.model_fingerprint,
        calibration_fingerprint=game.calibration_fingerprint,
        n_players=game.n_players,
        block_params=[int(n) for n in block_param_counts(game.model)],
        endpoints=endpoints,
        evaluations=game.n_evaluations - before,
        block_evaluations=game.n_block_evaluations - blocks,
        recorded_answers=2 - (game.n_evaluations - before),
        setup_seconds=setup_s,
        state_cache_mb=game.cache_mb,
        same_game=recorded is not None,
    )


def evaluate_chunk(
    spec: GameSpec, ids: torch.Tensor, seed: int, indices: np.ndarray, recorded: Recorded = None
) -> ChunkResult:
    """The walks of permutations ``indices`` of the run seeded ``seed`` (one chunk).

    Permutation ``k`` derives from ``(seed, k)`` alone, so a chunk's walks do not depend
    on which worker computes it, nor on the other chunks.
    """
    game, _ = worker_game(spec, ids)
    sampled = _sampled(game, recorded)
    answered = sampled.n_recorded_answers if isinstance(sampled, RecordedGame) else 0
    evals, blocks, t0 = game.n_evaluations, game.n_block_evaluations, time.perf_counter()
    perms = seeded_permutations(seed, np.asarray(indices), game.n_players)
    walks = spec.estimator.walk(sampled, perms)
    return ChunkResult(
        indices=np.asarray(indices),
        walks=walks,
        evaluations=game.n_evaluations - evals,
        block_evaluations=game.n_block_evaluations - blocks,
        recorded_answers=(
            sampled.n_recorded_answers - answered if isinstance(sampled, RecordedGame) else 0
        ),
        seconds=time.perf_counter() - t0,
        worker=worker_id(),
        game_builds=_GAME_BUILDS,
    )


class Fanout(Protocol):
    """Where the sampling's units run: in this process, or as tasks on workers."""

    def facts(self, spec: GameSpec, ids: torch.Tensor, recorded: Recorded) -> GameFacts:
        """:func:`game_facts` on a worker."""
        ...

    def chunks(
        self,
        spec: GameSpec,
        ids: torch.Tensor,
        recorded: Recorded,
        seed: int,
        chunks: list[np.ndarray],
    ) -> Generator[ChunkResult | BaseException, None, None]:
        """:func:`evaluate_chunk` of every chunk, yielded as each finishes (or fails).

        The consumer may stop early (close the iterator): chunks not yet started are then
        not run.
        """
        ...


class LocalFanout:
    """Every unit in this process, one after another, on this process's one game."""

    def facts(self, spec: GameSpec, ids: torch.Tensor, recorded: Recorded) -> GameFacts:
        """:func:`game_facts` here."""
        return game_facts(spec, ids, recorded)

    def chunks(
        self,
        spec: GameSpec,
        ids: torch.Tensor,
        recorded: Recorded,
        seed: int,
        chunks: list[np.ndarray],
    ) -> Generator[ChunkResult | BaseException, None, None]:
        """:func:`evaluate_chunk` of each chunk in turn."""
        for indices in chunks:
            yield evaluate_chunk(spec, ids, seed, indices, recorded)


class ChunksLostError(RuntimeError):
    """Some chunks failed (a worker died); the others are checkpointed: rerun to fill in."""


def plan_chunks(missing: list[int], size: int) -> list[np.ndarray]:
    """``missing`` permutation indices, in order, in chunks of at most ``size``."""
    return [np.array(missing[i : i + size], dtype=np.int64) for i in range(0, len(missing), size)]


def run(params: Params, progress: bool = True, fanout: Fanout | None = None) -> list[Path]:
    """Sample the permutations of the blocks' game; return the files written.

    The permutations are computed in chunks of ``runner.chunk_permutations`` by
    ``fanout`` (default: in this process) and checkpointed here as each chunk arrives,
    so a failed chunk loses only itself: the run finishes the others, raises
    :class:`ChunksLostError`, and a rerun computes only what is missing. However the work
    was split, the samples are the same bytes.

    Raises:
        FileNotFoundError: the calibration set is missing (run ``impq prepare``).
        UnsupportedError: ``spqe.backend`` cannot quantize inside the game (gptq).
        ValueError: a method of ``eval.methods`` needs walks of another kind.
        ChunksLostError: some chunks failed; the rest is checkpointed.
    """
    cfg = params.spqe
    objective_methods(params.eval.methods, cfg.walks)
    weight_quantizer(cfg.backend, cfg.group_size)  # refuse gptq before any work
    tensors, cal_meta = read_tensors(calibration_path(params))
    ids = tensors["input_ids"][: cfg.n_samples]
    fanout = fanout or LocalFanout()
    spec = GameSpec.from_params(params)

    t0 = time.perf_counter()
    recorded = _recorded(params)
    facts = fanout.facts(spec, ids, recorded)
    if not facts.same_game:
        recorded = None
    elif recorded is not None:
        log.info(
            "reusing the %d coalitions of %s (walks of the same game): only the others are "
            "evaluated",
            len(recorded[1]),
            samples_path(params),
        )
    sampling_cfg = cfg.model_dump(mode="json", exclude=set(SAMPLING_EXCLUDES))
    key = fingerprint(facts.fingerprint, json.dumps(sampling_cfg, sort_keys=True))
    checkpoint = Checkpoint(checkpoint_path(params), key)
    estimator = WALK_SAMPLERS[cfg.walks](tolerance=cfg.tolerance)
    n = facts.n_players
    budget = estimator.budget_for(n, cfg.permutations)
    max_perms = estimator.permutation_count(n, budget)
    seed = run_seed(cfg.seed)
    all_perms = seeded_permutations(seed, range(max_perms), n)
    provenance = {
        "model": params.model.source,
        "model_fingerprint": facts.model_fingerprint,
        "calibration_fingerprint": facts.calibration_fingerprint,
        "calibration_shape": list(ids.shape),
        "calibration_source": cal_meta.get("source", ""),
        "backend": cfg.backend,
        "high_bits": cfg.high_bits,
        "low_bits": cfg.low_bits,
        "group_size": cfg.group_size,
        "seed": cfg.seed,
        "budget": budget,
    }
    endpoints, done = _resume(checkpoint, all_perms, estimator.evaluations_per_permutation(n))
    evaluations = block_evaluations = reused = 0
    chunk_seconds = 0.0
    if endpoints is None:
        endpoints, evaluations = facts.endpoints, facts.evaluations
        reused, block_evaluations = facts.recorded_answers, facts.block_evaluations
    stop = estimator.stopping_point(*_prefix(all_perms, done, endpoints), endpoints)
    missing = [k for k in range(max_perms) if k not in done]
    chunks = plan_chunks(missing, params.runner.chunk_permutations)
    lost: list[str] = []
    builds: dict[str, int] = {}  # worker -> games it built
    bar = tqdm(total=max_perms, initial=len(done), desc="spqe", unit="perm", disable=not progress)
    t1 = time.perf_counter()
    results = fanout.chunks(spec, ids, recorded, seed, chunks if stop is None else [])
    for result in results:
        if isinstance(result, BaseException):
            log.error("a chunk of permutations was lost: %s", result)
            lost.append(f"{type(result).__name__}: {result}")
            continue
        done.update(zip(result.indices.tolist(), result.walks, strict=True))
        evaluations += result.evaluations
        block_evaluations += result.block_evaluations
        reused += result.recorded_answers
        chunk_seconds += result.seconds
        builds[result.worker] = max(builds.get(result.worker, 0), result.game_builds)
        _save(checkpoint, all_perms, done, endpoints)
        bar.update(len(result.indices))
        prefix_perms, prefix_walks = _prefix(all_perms, done, endpoints)
        stop = estimator.stopping_point(prefix_perms, prefix_walks, endpoints)
        if stop is not None:
            results.close()  # the rest is not needed: chunks not started are not run
            break
    bar.close()
    sample_s = time.perf_counter() - t1
    if lost:
        raise ChunksLostError(
            f"{len(lost)} chunk(s) of permutations failed ({lost[0]}); the "
            f"{len(done)} permutations done are checkpointed in {checkpoint.path}: rerun "
            "to compute only the missing ones"
        )
    count = stop if stop is not None else max_perms
    walks = np.stack([done[k] for k in range(count)])
    samples = {
        "permutations": all_perms[:count],
        "walks": walks,
        "endpoints": np.asarray(endpoints),
        "max_permutations": np.array(max_perms),
    }

    with atomic_path(samples_path(params)) as tmp, open(tmp, "wb") as f:
        write_npz(
            f,
            {
                **samples,
                "block_params": np.array(facts.block_params, dtype=np.int64),
                "estimator": np.array(WALK_SAMPLERS[cfg.walks]().name),
                "provenance": np.array(json.dumps(provenance)),
            },
        )
    metrics = {
        "evaluations_this_run": evaluations,
        "block_evaluations_this_run": block_evaluations,
        "evaluations_reused": reused,
        "block_evaluations_per_evaluation": block_evaluations / max(evaluations, 1),
        "state_cache_mb": facts.state_cache_mb,
        "seconds": time.perf_counter() - t0,
        "setup_seconds": facts.setup_seconds,
        "evals_per_s": evaluations / max(sample_s, 1e-9),
        "chunk_seconds": chunk_seconds,
        "workers": len(builds),
        "worker_model_loads": max(builds.values(), default=0),
    }
    out_metrics = write_json(sampling_metrics_path(params), metrics, versioned=False)
    checkpoint.clear()
    log.info(
        "SPQE sampling: %d permutations, %d evaluations this run (%.1f/s)",
        count,
        evaluations,
        metrics["evals_per_s"],
    )
    return [samples_path(params), out_metrics]


def _prefix(
    all_perms: np.ndarray, done: dict[int, np.ndarray], endpoints: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The permutations and walks of the longest prefix of the run that is done."""
    count = 0
    while count in done:
        count += 1
    steps = next(iter(done.values())).shape[0] if done else 0
    walks = np.stack([done[k] for k in range(count)]) if count else np.empty((0, steps))
    return all_perms[:count], walks


def _save(
    checkpoint: Checkpoint,
    all_perms: np.ndarray,
    done: dict[int, np.ndarray],
    endpoints: np.ndarray,
) -> None:
    order = np.array(sorted(done), dtype=np.int64)
    checkpoint.save(
        {
            "indices": order,
            "permutations": all_perms[order],
            "walks": np.stack([done[k] for k in order.tolist()]),
            "endpoints": np.asarray(endpoints),
        }
    )


def _resume(
    checkpoint: Checkpoint, all_perms: np.ndarray, steps: int
) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
    """(endpoints, index -> walk) of the checkpoint; (None, {}) when it does not match."""
    saved = checkpoint.load()
    if saved is None:
        return None, {}
    perms, walks = saved["permutations"], saved["walks"]
    indices = saved.get("indices", np.arange(len(perms)))
    if (
        len(indices) != len(perms)
        or (len(indices) and (indices.min() < 0 or indices.max() >= len(all_perms)))
        or not np.array_equal(perms, all_perms[indices])
        or walks.shape != (len(perms), steps)
    ):
        log.warning("checkpoint %s does not match this run; starting over", checkpoint.path)
        return None, {}
    log.info("resuming from %s: %d permutations done", checkpoint.path, len(perms))
    return saved["endpoints"], dict(zip(indices.tolist(), walks, strict=True))


def _recorded(params: Params) -> Recorded:
    """The coalitions, raw values and provenance of the samples on disk, if readable."""
    path = samples_path(params)
    if not path.is_file():
        return None
    try:
        samples, _, _, old = load_samples(params)
        coalitions, values = recorded_coalitions(samples)
    except (OSError, ValueError, KeyError) as err:
        log.warning("not reusing %s: %s", path, err)
        return None
    return coalitions, values, old


def load_samples(params: Params) -> tuple[dict[str, np.ndarray], np.ndarray, str, dict[str, Any]]:
    """(samples for ``assemble``, block parameter counts, estimator name, provenance).

    Raises:
        FileNotFoundError: no samples (run ``impq spqe``).
    """
    path = samples_path(params)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `impq spqe` first")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    block_params = arrays.pop("block_params")
    name = str(arrays.pop("estimator"))
    provenance = json.loads(str(arrays.pop("provenance")))
    return arrays, block_params, name, provenance
