"""Stage ``interactions``: Shapley values and every method's interaction model from SPQE's
samples.

Reads ``artifacts/spqe/samples.npz`` (written by the ``spqe`` stage) and writes

- ``artifacts/spqe/shapley.npz``: the sampling estimator's own result (Shapley values
  and, for prefix walks, the covariance ``K`` with ``spqe.alpha``; for SII walks, the
  raw pairwise Shapley interaction index), byte-identical to a one-shot
  :meth:`~impq.estimate.PermutationWalk.estimate` with the same params;
- ``artifacts/spqe/objectives/<method>.npz``: the
  :class:`~impq.estimate.LevelObjective` over ``spqe.ladder`` of every registered method
  (:data:`~impq.estimate.OBJECTIVES`) the walks support, which the ``assign`` stage
  solves;
- ``artifacts/spqe/marginals.npy`` (M × L) and the flat ``metrics/spqe.json``, with the
  surrogate's cross-validated R² beside the additive model's.

It evaluates nothing, so changing an assembly option (``spqe.alpha``,
``spqe.min_pair_samples``, ``spqe.interaction_fdr``) costs no model evaluation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import atomic_path, read_json, write_json
from impq.config import Params
from impq.estimate import (
    WALK_SAMPLERS,
    PermutationSampling,
    get_objective,
    objective_methods,
    objectives_for,
)
from impq.pipeline.paths import objective_path, objectives_dir
from impq.pipeline.spqe import (
    load_samples,
    marginals_path,
    metrics_path,
    sampling_metrics_path,
    shapley_path,
)

__all__ = ["objective_path", "objectives_dir", "run"]

log = logging.getLogger(__name__)


def _samples_ladder(provenance: dict[str, Any], ladder: list[int]) -> np.ndarray:
    """The ladder of samples that do not record one: the two precisions of their game."""
    top = provenance.get("high_bits", ladder[0])
    bottom = provenance.get("low_bits", ladder[-1])
    return np.array(provenance.get("ladder", [top, bottom]), dtype=np.int64)


def run(params: Params) -> list[Path]:
    """Assemble values, interactions and every objective; return the files written.

    Raises:
        FileNotFoundError: the samples are missing (run ``impq spqe``).
        ValueError: the samples were drawn for another ``spqe.walks``, or a method of
            ``eval.methods`` needs walks of another kind.
    """
    cfg = params.spqe
    samples, block_params, name, provenance = load_samples(params)
    sampler = WALK_SAMPLERS[cfg.walks]
    if sampler.name != name:
        raise ValueError(
            f"the samples were drawn by {name!r}, spqe.walks={cfg.walks!r} "
            f"needs {sampler.name!r}; run `impq spqe` again"
        )
    objective_methods(params.eval.methods, cfg.walks)
    options: dict[str, Any] = {"alpha": cfg.alpha} if sampler is PermutationSampling else {}
    estimator = sampler(**options)
    walks = estimator.walks({"ladder": _samples_ladder(provenance, cfg.ladder), **samples})
    estimate = estimator.assemble_walks(walks)
    result = estimate.to_result(block_params, provenance)
    out_result = result.save(shapley_path(params))
    with atomic_path(marginals_path(params)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(estimate.marginals))

    objective_metrics: dict[str, float] = {}
    written_objectives = []
    for method in objectives_for(walks.kind):
        fit = get_objective(method).build(walks, cfg)
        path = fit.to_objective(block_params, provenance).save(objective_path(params, method))
        written_objectives.append(path)
        objective_metrics.update(fit.metrics)
    for stale in set(objectives_dir(params).glob("*.npz")) - set(written_objectives):
        stale.unlink()  # another walk kind's objective, e.g. sii after a switch to prefix

    sampling = read_json(sampling_metrics_path(params))
    n_perms = int(estimate.meta["permutations"])
    metrics = {
        "permutations": n_perms,
        "evaluations": estimate.n_evaluations,
        **sampling,
        "max_se": float(np.max(result.values_se)),
        "n_nonfinite": int(estimate.meta["n_nonfinite"]),
        "value_empty": float(estimate.meta["value_empty"]),
        "value_full": float(estimate.meta["value_full"]),
        "n_players": result.n_players,
        **objective_metrics,
    }
    out_metrics = write_json(metrics_path(params), metrics, versioned=False)
    log.info(
        "SPQE: %d permutations, %d evaluations, max SE %.3g, %d non-finite; surrogate CV R² "
        "%.3f vs additive %.3f",
        n_perms,
        estimate.n_evaluations,
        metrics["max_se"],
        metrics["n_nonfinite"],
        objective_metrics.get("surrogate_cv_r2", float("nan")),
        objective_metrics.get("additive_cv_r2", float("nan")),
    )
    return [out_result, marginals_path(params), *written_objectives, out_metrics]
