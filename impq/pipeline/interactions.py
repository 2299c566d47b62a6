"""Stage ``interactions``: Shapley values and the interaction matrix from SPQE's samples.

Reads ``artifacts/spqe/samples.npz`` (written by the ``spqe`` stage) and assembles the
:class:`~impq.estimate.ShapleyResult` with ``spqe.alpha`` (covariance interactions) or
the Shapley interaction index (``spqe.interactions: shapley-interaction``, whose
samples carry their own extra coalitions), the raw marginals and flat metrics. It
evaluates nothing, so changing ``spqe.alpha`` costs no model evaluation; the bytes are
those of a one-shot :meth:`~impq.estimate.PermutationWalk.estimate` with the same
params.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import atomic_path, read_json, write_json
from impq.config import Params
from impq.estimate import PermutationSampling
from impq.pipeline.spqe import (
    ESTIMATOR_FOR_INTERACTIONS,
    load_samples,
    marginals_path,
    metrics_path,
    sampling_metrics_path,
    shapley_path,
)

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(params: Params) -> list[Path]:
    """Assemble values, interactions and their SEs; return the files written.

    Raises:
        FileNotFoundError: the samples are missing (run ``impq spqe``).
        ValueError: the samples were drawn for another ``spqe.interactions``.
    """
    cfg = params.spqe
    samples, block_params, name, provenance = load_samples(params)
    cls = ESTIMATOR_FOR_INTERACTIONS[cfg.interactions]
    if cls.name != name:
        raise ValueError(
            f"the samples were drawn by {name!r}, spqe.interactions={cfg.interactions!r} "
            f"needs {cls.name!r}; run `impq spqe` again"
        )
    options: dict[str, Any] = {"alpha": cfg.alpha} if cls is PermutationSampling else {}
    estimate = cls(**options).assemble(samples)
    result = estimate.to_result(block_params, provenance)

    out_result = result.save(shapley_path(params))
    with atomic_path(marginals_path(params)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(estimate.marginals))
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
    }
    out_metrics = write_json(metrics_path(params), metrics, versioned=False)
    log.info(
        "SPQE: %d permutations, %d evaluations, max SE %.3g, %d non-finite",
        n_perms,
        estimate.n_evaluations,
        metrics["max_se"],
        metrics["n_nonfinite"],
    )
    return [out_result, marginals_path(params), out_metrics]
