"""Stage ``spqe``: coalition sampling of the decoder blocks' game, resumable.

Reads the calibration set, builds the model game (every block at a precision of
``spqe.ladder`` through ``spqe.backend``; a calibrated backend, gptq, through its
per-block database of the same calibration sequences, built once and kept in
``artifacts/spqe/databases``), samples ``spqe.permutations`` walks and writes
their raw values (``spqe.walks``: prefix or SII walks) to ``artifacts/spqe/samples.npz``
(with the blocks' parameter counts and the provenance, which names the ladder) and the
evaluation metrics to ``sampling.json``. The walks run through the one sampling driver
(:func:`impq.estimate.driver.drive_walks`), in chunks on a :class:`Fanout`. Values and every method's interaction model
are assembled from them by the ``interactions`` stage (:mod:`impq.pipeline.interactions`),
so a change of an assembly option (:data:`SAMPLING_EXCLUDES`) samples nothing again:
nothing here depends on them. After every chunk the work done so far is checkpointed; rerunning with the same params, model and calibration resumes and ends
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from impq.artifacts import atomic_path, fingerprint, read_json, read_tensors, write_json
from impq.backends import UnsupportedError, get_backend
from impq.backends.base import DatabaseBackend, WeightDatabase, database_backends
from impq.config import SPQE_ASSEMBLY_OPTIONS, SPQE_SAMPLING_EXCLUDES, ModelConfig, Params
from impq.estimate import WALK_SAMPLERS, Checkpoint
from impq.estimate.driver import ChunksLostError, drive_walks
from impq.estimate.objectives import objective_methods
from impq.estimate.permutation import PermutationWalk, run_seed, seeded_permutations
from impq.estimate.recorded import RecordedGame, recorded_coalitions
from impq.estimate.result import write_npz
from impq.game import Game, ModelGame, WeightQuantizer, check_game_backend, weight_quantizer
from impq.models import block_param_counts, load_model
from impq.pipeline.paths import (
    calibration_path,
    marginals_path,
    samples_path,
    sampling_metrics_path,
    shapley_path,
    spqe_database_dir,
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
    "game_database",
    "game_facts",
    "game_quantizer",
    "load_samples",
    "marginals_path",
    "metrics_path",
    "provenance_ladder",
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
    "ladder",
    "group_size",
    "database",
)
"""Provenance keys on which a coalition's value depends: samples that agree on all of
them are reused (provenance written before ladders names ``high_bits`` and ``low_bits``:
its ladder is ``[high_bits, low_bits]``, see :func:`provenance_ladder`; ``database``, the
key of the per-block database a calibrated backend played on, is absent otherwise)."""


def provenance_ladder(provenance: dict[str, Any]) -> list[int]:
    """The ladder samples were walked over, from their provenance.

    Raises:
        KeyError: the provenance names neither a ladder nor the two precisions.
    """
    if "ladder" in provenance:
        return [int(b) for b in provenance["ladder"]]
    return [int(provenance["high_bits"]), int(provenance["low_bits"])]


@dataclass(frozen=True)
class GameSpec:
    """What a worker needs, beside the calibration ids, to build the sampled game.

    Attributes:
        calibration_bits: the precision of the blocks in front of a block while a
            calibrated backend quantizes it (its per-block database).
        database_dir: the absolute folder that keeps those databases.
    """

    model: ModelConfig
    backend: str
    group_size: int
    ladder: tuple[int, ...]
    batch_size: int | None
    cache_mb: float | None
    walks: str
    calibration_bits: int
    database_dir: str

    @classmethod
    def from_params(cls, params: Params) -> GameSpec:
        """The game of ``params.model`` and ``params.spqe``; a local model path made
        absolute (a Ray worker runs in a folder of its own)."""
        cfg = params.spqe
        model = params.model
        if Path(model.source).exists():
            model = model.model_copy(update={"source": str(Path(model.source).resolve())})
        return cls(
            model, cfg.backend, cfg.group_size, tuple(cfg.ladder),
            cfg.batch_size, cfg.cache_mb, cfg.walks, cfg.calibration_bits,
            str(spqe_database_dir(params).resolve()),
        )  # fmt: skip

    def quantizer(self, model: torch.nn.Module, ids: torch.Tensor) -> tuple[WeightQuantizer, str]:
        """The game's weight quantizer for ``model`` and its key
        (:attr:`~impq.game.ModelGame.quantizer_key`).

        A data-free backend quantizes each weight on its own (key ``""``). A backend that
        builds a per-block database (gptq) answers from its database of ``model``
        calibrated on ``ids``, read from :attr:`database_dir` when built there before,
        else built and kept there (key: the database's).

        Raises:
            UnsupportedError: the backend cannot play the game, or cannot quantize this
                model at these precisions.
        """
        backend = get_backend(self.backend)
        if isinstance(backend, DatabaseBackend) and not backend.data_free:
            database = self.database(model, ids)
            return database.quantizer(model), database.key
        return weight_quantizer(self.backend, self.group_size), ""

    def database(self, model: torch.nn.Module, ids: torch.Tensor) -> WeightDatabase:
        """The per-block database of :attr:`backend` that the game of ``model`` calibrated
        on ``ids`` plays on: read from :attr:`database_dir` when built there before, else
        built and kept there.

        Raises:
            UnsupportedError: the backend builds no per-block database (only gptq does),
                or cannot quantize this model at these precisions.
        """
        backend = get_backend(self.backend)
        if not isinstance(backend, DatabaseBackend) or backend.data_free:
            raise UnsupportedError(
                f"backend {self.backend!r} builds no per-block database; only "
                f"{database_backends()} do"
            )
        return backend.weight_database(
            model, ids, self.ladder, self.group_size, self.calibration_bits,
            cache_dir=self.database_dir, progress=False,
        )  # fmt: skip

    @property
    def n_steps(self) -> int:
        """Steps per block of a walk (``len(ladder) - 1``)."""
        return len(self.ladder) - 1

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
    quantizer_key: str
    """Key of the per-block database the game plays on; ``""`` for a data-free backend."""
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

    The model is loaded and its blocks quantized at every rung of the ladder once per process
    (a Ray worker, or the stage itself with the local runner); every chunk reuses them. A
    calibrated backend's database is read from ``spec.database_dir`` (built there by the
    first process that needs it).
    """
    key = fingerprint(repr(spec), _source_stamp(spec.model), fingerprint(ids))
    if key not in _WORKER_GAMES:
        global _GAME_BUILDS
        _WORKER_GAMES.clear()  # one model per worker
        _GAME_BUILDS += 1
        t0 = time.perf_counter()
        model = load_model(spec.model)
        quantize, quantizer_key = spec.quantizer(model, ids)
        game = ModelGame(
            model,
            ids,
            quantize,
            ladder=spec.ladder,
            batch_size=spec.batch_size,
            progress=False,
            cache_mb=spec.cache_mb,
            quantizer_key=quantizer_key,
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
        "ladder": list(spec.ladder),
        "group_size": spec.group_size,
        **_database(game.quantizer_key),
    }


def _database(quantizer_key: str) -> dict[str, str]:
    """The ``database`` entry of a provenance: the key, where the game played on one."""
    return {"database": quantizer_key} if quantizer_key else {}


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
        theirs = {**recorded[2], "ladder": provenance_ladder(recorded[2])}
        differs = [k for k in SAME_GAME if theirs.get(k) != mine.get(k)]
        if differs:
            log.info("not reusing earlier samples: another game (%s differ)", ", ".join(differs))
            recorded = None
    before, blocks = game.n_evaluations, game.n_block_evaluations
    top = np.zeros((1, game.n_players), dtype=np.uint8)
    endpoints = _sampled(game, recorded)(np.concatenate([top, top + spec.n_steps]))
    return GameFacts(
        fingerprint=game.fingerprint(),
        model_fingerprint=game.model_fingerprint,
        calibration_fingerprint=game.calibration_fingerprint,
        quantizer_key=game.quantizer_key,
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
    """The walks number ``indices`` of the run seeded ``seed`` (one chunk).

    Walk ``k`` derives from ``(seed, k)`` alone, so a chunk's walks do not depend on
    which worker computes it, nor on the other chunks.
    """
    game, _ = worker_game(spec, ids)
    sampled = _sampled(game, recorded)
    answered = sampled.n_recorded_answers if isinstance(sampled, RecordedGame) else 0
    evals, blocks, t0 = game.n_evaluations, game.n_block_evaluations, time.perf_counter()
    perms = seeded_permutations(seed, np.asarray(indices), game.n_players, spec.n_steps)
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


def run(params: Params, progress: bool = True, fanout: Fanout | None = None) -> list[Path]:
    """Sample the walks of the blocks' game; return the files written.

    The walks are computed in chunks of ``runner.chunk_permutations`` by ``fanout``
    (default: in this process) through the sampling driver
    (:func:`~impq.estimate.driver.drive_walks`), which checkpoints them here as each
    chunk arrives, so a failed chunk loses only itself: the run finishes the others,
    raises :class:`ChunksLostError`, and a rerun computes only what is missing. However
    the work was split, the samples are the same bytes.

    Raises:
        FileNotFoundError: the calibration set is missing (run ``impq prepare``).
        UnsupportedError: ``spqe.backend`` cannot play the game
            (:func:`~impq.game.check_game_backend`).
        ValueError: a method of ``eval.methods`` needs walks of another kind.
        ChunksLostError: some chunks failed; the rest is checkpointed.
    """
    cfg = params.spqe
    objective_methods(params.eval.methods, cfg.walks)
    check_game_backend(cfg.backend)  # before any work
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
    n, n_steps = facts.n_players, spec.n_steps
    budget = estimator.budget_for(n, cfg.permutations, n_steps)
    max_perms = estimator.permutation_count(n, budget, n_steps)
    seed = run_seed(cfg.seed)
    provenance = {
        "model": params.model.source,
        "model_fingerprint": facts.model_fingerprint,
        "calibration_fingerprint": facts.calibration_fingerprint,
        "calibration_shape": list(ids.shape),
        "calibration_source": cal_meta.get("source", ""),
        "backend": cfg.backend,
        "ladder": list(spec.ladder),
        "group_size": cfg.group_size,
        **_database(facts.quantizer_key),
        "seed": cfg.seed,
        "budget": budget,
    }
    tally = {"evaluations": 0, "block_evaluations": 0, "reused": 0, "seconds": 0.0}
    builds: dict[str, int] = {}  # worker -> games it built

    def count(result: Any) -> None:
        tally["evaluations"] += result.evaluations
        tally["block_evaluations"] += result.block_evaluations
        tally["reused"] += result.recorded_answers
        tally["seconds"] += result.seconds
        builds[result.worker] = max(builds.get(result.worker, 0), result.game_builds)

    t1 = time.perf_counter()
    sampled = drive_walks(
        seeded_permutations(seed, range(max_perms), n, n_steps),
        estimator.evaluations_per_permutation(n, n_steps),
        lambda: facts.endpoints,
        lambda chunks: fanout.chunks(spec, ids, recorded, seed, chunks),
        chunk_size=params.runner.chunk_permutations,
        stopping_point=estimator.stopping_point,
        checkpoint=checkpoint,
        on_chunk=count,
        progress=progress,
        desc="spqe",
    )
    sample_s = time.perf_counter() - t1
    if sampled.endpoints_computed:
        tally["evaluations"] += facts.evaluations
        tally["reused"] += facts.recorded_answers
        tally["block_evaluations"] += facts.block_evaluations
    samples = sampled.samples

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
    evaluations = int(tally["evaluations"])
    earlier = _earlier_costs(params) if recorded is not None else {}
    metrics = {
        "evaluations_this_run": evaluations,
        # what the samples on disk cost, over this run and the runs whose samples it reused
        "evaluations_all_runs": earlier.get("evaluations_all_runs", 0) + evaluations,
        "chunk_seconds_all_runs": earlier.get("chunk_seconds_all_runs", 0.0) + tally["seconds"],
        "block_evaluations_this_run": int(tally["block_evaluations"]),
        "evaluations_reused": int(tally["reused"]),
        "block_evaluations_per_evaluation": tally["block_evaluations"] / max(evaluations, 1),
        "state_cache_mb": facts.state_cache_mb,
        "seconds": time.perf_counter() - t0,
        "setup_seconds": facts.setup_seconds,
        "evals_per_s": evaluations / max(sample_s, 1e-9),
        "chunk_seconds": tally["seconds"],
        "workers": len(builds),
        "worker_model_loads": max(builds.values(), default=0),
    }
    out_metrics = write_json(sampling_metrics_path(params), metrics, versioned=False)
    checkpoint.clear()
    log.info(
        "SPQE sampling: %d walks, %d evaluations this run (%.1f/s)",
        len(samples["walks"]),
        evaluations,
        metrics["evals_per_s"],
    )
    return [samples_path(params), out_metrics]


def game_quantizer(params: Params, model: torch.nn.Module) -> tuple[WeightQuantizer, str]:
    """The SPQE game's weight quantizer for ``model`` (the model ``params.model`` loads)
    and its key, for a stage that plays the game again (evopress, verify, seeded): a
    calibrated backend's is the database of the sequences this stage samples on, read from
    where this stage keeps it (:meth:`GameSpec.quantizer`)."""
    return GameSpec.from_params(params).quantizer(model, _game_ids(params))


def game_database(
    params: Params, model: torch.nn.Module, backend: str | None = None
) -> WeightDatabase:
    """The per-block database the SPQE game of ``params`` plays on with ``backend``
    (default ``spqe.backend``), of ``model`` (the model ``params.model`` loads): the one
    this stage built, read from where it keeps it, else built and kept there
    (:meth:`GameSpec.database`); for the sweep's ``backends.calibrated_cells: database``.

    Raises:
        UnsupportedError: ``backend`` builds no per-block database (only gptq does).
    """
    spec = GameSpec.from_params(params)
    if backend is not None:
        spec = replace(spec, backend=backend)
    return spec.database(model, _game_ids(params))


def _game_ids(params: Params) -> torch.Tensor:
    """The calibration sequences the game plays on: the first ``spqe.n_samples``."""
    return read_tensors(calibration_path(params))[0]["input_ids"][: params.spqe.n_samples]


def _earlier_costs(params: Params) -> dict[str, Any]:
    """The ``*_all_runs`` costs of the samples on disk, from the metrics of the run that
    wrote them (a file written before those keys: that run's own costs)."""
    path = sampling_metrics_path(params)
    try:
        old = read_json(path)
    except (OSError, ValueError):
        return {}
    return {
        "evaluations_all_runs": old.get("evaluations_all_runs", old.get("evaluations_this_run", 0)),
        "chunk_seconds_all_runs": old.get("chunk_seconds_all_runs", old.get("chunk_seconds", 0.0)),
    }


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

    The samples hold the ``ladder`` their walks went down (from the provenance; samples
    written before ladders are the two-level ``[high_bits, low_bits]``).

    Raises:
        FileNotFoundError: no samples (run ``impq spqe``).
        ValueError: the provenance names no ladder (not a samples file of this stage).
    """
    path = samples_path(params)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `impq spqe` first")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    block_params = arrays.pop("block_params")
    name = str(arrays.pop("estimator"))
    provenance = json.loads(str(arrays.pop("provenance")))
    try:
        arrays["ladder"] = np.array(provenance_ladder(provenance), dtype=np.int64)
    except KeyError:
        raise ValueError(
            f"{path}: its provenance names no ladder (nor high_bits/low_bits); run "
            "`impq spqe` again"
        ) from None
    return arrays, block_params, name, provenance
