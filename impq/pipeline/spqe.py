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
import time
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import atomic_path, fingerprint, read_tensors, write_json
from impq.config import SPQE_ASSEMBLY_OPTIONS, SPQE_SAMPLING_EXCLUDES, Params
from impq.estimate import WALK_SAMPLERS, Checkpoint
from impq.estimate.objectives import objective_methods
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
    "checkpoint_path",
    "load_samples",
    "marginals_path",
    "metrics_path",
    "run",
    "samples_path",
    "sampling_metrics_path",
    "shapley_path",
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


def run(params: Params, progress: bool = True) -> list[Path]:
    """Sample the permutations of the blocks' game; return the files written.

    Raises:
        FileNotFoundError: the calibration set is missing (run ``impq prepare``).
        UnsupportedError: ``spqe.backend`` cannot quantize inside the game (gptq).
        ValueError: a method of ``eval.methods`` needs walks of another kind.
    """
    cfg = params.spqe
    objective_methods(params.eval.methods, cfg.walks)
    quantize = weight_quantizer(cfg.backend, cfg.group_size)
    tensors, cal_meta = read_tensors(calibration_path(params))
    ids = tensors["input_ids"][: cfg.n_samples]
    model = load_model(params.model)

    t0 = time.perf_counter()
    with ModelGame(
        model,
        ids,
        quantize,
        high_bits=cfg.high_bits,
        low_bits=cfg.low_bits,
        batch_size=cfg.batch_size,
        progress=progress,
        cache_mb=cfg.cache_mb,
    ) as game:
        setup_s = time.perf_counter() - t0
        sampling_cfg = cfg.model_dump(mode="json", exclude=set(SAMPLING_EXCLUDES))
        key = fingerprint(game.fingerprint(), json.dumps(sampling_cfg, sort_keys=True))
        checkpoint = Checkpoint(checkpoint_path(params), key)
        estimator = WALK_SAMPLERS[cfg.walks](
            tolerance=cfg.tolerance, checkpoint=checkpoint, progress=progress
        )
        budget = estimator.budget_for(game.n_players, cfg.permutations)
        provenance = {
            "model": params.model.source,
            "model_fingerprint": game.model_fingerprint,
            "calibration_fingerprint": game.calibration_fingerprint,
            "calibration_shape": list(ids.shape),
            "calibration_source": cal_meta.get("source", ""),
            "backend": cfg.backend,
            "high_bits": cfg.high_bits,
            "low_bits": cfg.low_bits,
            "group_size": cfg.group_size,
            "seed": cfg.seed,
            "budget": budget,
        }
        sampled: Game = game
        if (recorded := _recorded(params, provenance)) is not None:
            sampled = RecordedGame(game, *recorded)
        t1 = time.perf_counter()
        samples = estimator.sample(sampled, budget, cfg.seed)
        sample_s = time.perf_counter() - t1
        evaluations_run = game.n_evaluations
        block_evaluations = game.n_block_evaluations
        reused = sampled.n_recorded_answers if isinstance(sampled, RecordedGame) else 0

    with atomic_path(samples_path(params)) as tmp, open(tmp, "wb") as f:
        write_npz(
            f,
            {
                **samples,
                "block_params": np.array(block_param_counts(model), dtype=np.int64),
                "estimator": np.array(estimator.name),
                "provenance": np.array(json.dumps(provenance)),
            },
        )
    metrics = {
        "evaluations_this_run": evaluations_run,
        "block_evaluations_this_run": block_evaluations,
        "evaluations_reused": reused,
        "block_evaluations_per_evaluation": block_evaluations / max(evaluations_run, 1),
        "state_cache_mb": game.cache_mb,
        "seconds": time.perf_counter() - t0,
        "setup_seconds": setup_s,
        "evals_per_s": evaluations_run / max(sample_s, 1e-9),
    }
    out_metrics = write_json(sampling_metrics_path(params), metrics, versioned=False)
    checkpoint.clear()
    log.info(
        "SPQE sampling: %d permutations, %d evaluations this run (%.1f/s)",
        len(samples["permutations"]),
        evaluations_run,
        metrics["evals_per_s"],
    )
    return [samples_path(params), out_metrics]


def _recorded(params: Params, provenance: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The coalitions and raw values of the samples on disk, if they are of the same game."""
    path = samples_path(params)
    if not path.is_file():
        return None
    try:
        samples, _, name, old = load_samples(params)
    except (OSError, ValueError, KeyError) as err:
        log.warning("not reusing %s: %s", path, err)
        return None
    differs = [k for k in SAME_GAME if old.get(k) != provenance[k]]
    if differs:
        log.info("not reusing %s: another game (%s differ)", path, ", ".join(differs))
        return None
    coalitions, values = recorded_coalitions(samples)
    log.info(
        "reusing the %d coalitions of %s (%s walks of the same game): only the others are "
        "evaluated",
        len(values),
        path,
        name,
    )
    return coalitions, values


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
