"""Stage ``spqe``: Shapley values and interactions of the decoder blocks, resumable.

Reads the calibration set, builds the model game (blocks at ``spqe.high_bits`` or
``spqe.low_bits`` through ``spqe.backend``), samples ``spqe.permutations`` permutations
and writes the :class:`~impq.estimate.ShapleyResult`, the raw marginals and flat metrics.
After every permutation the work done so far is checkpointed; rerunning with the same
params, model and calibration resumes and ends with the same bytes as an uninterrupted
run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import atomic_path, fingerprint, read_tensors, write_json
from impq.config import Params
from impq.estimate import (
    Checkpoint,
    PermutationSampling,
    PermutationSamplingSII,
    PermutationWalk,
)
from impq.game import ModelGame, weight_quantizer
from impq.models import block_param_counts, load_model
from impq.pipeline.prepare import calibration_path

__all__ = ["checkpoint_path", "marginals_path", "metrics_path", "run", "shapley_path"]

log = logging.getLogger(__name__)

ESTIMATOR_FOR_INTERACTIONS: dict[str, type[PermutationWalk]] = {
    "covariance": PermutationSampling,
    "shapley-interaction": PermutationSamplingSII,
}
"""``spqe.interactions`` -> the estimator that produces that kind of interaction."""


def shapley_path(params: Params) -> Path:
    """Where the Shapley result is written."""
    return Path(params.paths.artifacts) / "spqe" / "shapley.npz"


def marginals_path(params: Params) -> Path:
    """Where the (M, L) marginal contributions are written."""
    return Path(params.paths.artifacts) / "spqe" / "marginals.npy"


def checkpoint_path(params: Params) -> Path:
    """Where the run in progress keeps its permutations (deleted once done)."""
    return Path(params.paths.artifacts) / "spqe" / "checkpoint.npz"


def metrics_path(params: Params) -> Path:
    """Where the flat SPQE metrics are written."""
    return Path(params.paths.metrics) / "spqe.json"


def run(params: Params, progress: bool = True) -> list[Path]:
    """Estimate the blocks' Shapley values and interactions; return the files written.

    Raises:
        FileNotFoundError: the calibration set is missing (run ``impq prepare``).
        UnsupportedError: ``spqe.backend`` cannot quantize inside the game (gptq).
    """
    cfg = params.spqe
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
    ) as game:
        setup_s = time.perf_counter() - t0
        key = fingerprint(
            game.fingerprint(), json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
        )
        checkpoint = Checkpoint(checkpoint_path(params), key)
        cls = ESTIMATOR_FOR_INTERACTIONS[cfg.interactions]
        options: dict[str, Any] = {"alpha": cfg.alpha} if cls is PermutationSampling else {}
        estimator = cls(
            tolerance=cfg.tolerance, checkpoint=checkpoint, progress=progress, **options
        )
        budget = estimator.budget_for(game.n_players, cfg.permutations)
        t1 = time.perf_counter()
        estimate = estimator.estimate(game, budget, np.random.default_rng(cfg.seed))
        sample_s = time.perf_counter() - t1
        evaluations_run = game.n_evaluations
        block_evaluations = game.n_block_evaluations
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
    result = estimate.to_result(np.array(block_param_counts(model), dtype=np.int64), provenance)

    out_result = result.save(shapley_path(params))
    with atomic_path(marginals_path(params)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(estimate.marginals))
    n_perms = int(estimate.meta["permutations"])
    metrics = {
        "permutations": n_perms,
        "evaluations": estimate.n_evaluations,
        "evaluations_this_run": evaluations_run,
        "block_evaluations_per_evaluation": block_evaluations / max(evaluations_run, 1),
        "seconds": time.perf_counter() - t0,
        "setup_seconds": setup_s,
        "evals_per_s": evaluations_run / max(sample_s, 1e-9),
        "max_se": float(np.max(result.values_se)),
        "n_nonfinite": int(estimate.meta["n_nonfinite"]),
        "value_empty": float(estimate.meta["value_empty"]),
        "value_full": float(estimate.meta["value_full"]),
        "n_players": result.n_players,
    }
    out_metrics = write_json(metrics_path(params), metrics, versioned=False)
    checkpoint.clear()
    log.info(
        "SPQE: %d permutations, %d evaluations (%.1f/s), max SE %.3g, %d non-finite",
        n_perms,
        estimate.n_evaluations,
        metrics["evals_per_s"],
        metrics["max_se"],
        metrics["n_nonfinite"],
    )
    return [out_result, marginals_path(params), out_metrics]
