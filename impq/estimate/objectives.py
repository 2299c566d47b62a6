"""Interaction models: the quadratic objective of each assignment method, from the walks.

Every method minimises the predicted loss increase ``f(q) = aᵀq + qᵀKq`` with
``a_i = φ_i - Σ_{j≠i} K_ij`` (:class:`~impq.solve.BitProblem`), ``q_i = 1`` for a block
at the low precision. The methods differ in ``(φ, K)``, and each is assembled from the
same sampled walks without evaluating anything:

- ``impq`` — the paper: ``φ`` the mean marginals, ``K = (1 - α)·C + α·diag(C)`` with ``C``
  the covariance of the marginals across permutations. The marginals of a permutation
  sum to ``v(N) - v(∅)``, so every row of ``C`` sums to zero and the objective is
  ``φᵀq + Σ_{i∈S} C_ii + (1 - α)·Var_π(Σ_{i∈S} m_i)``: a mean-variance rule (README).
  No significance filter: zeroing entries would break that identity and the positive
  semi-definiteness of the variance term, so the solver would chase the noise it left.
- ``sii`` — the pairwise Shapley interaction index (SII walks only): ``K = SII/2`` with
  zero diagonal, so that ``f`` equals ``v(S) - v(∅)`` on every pairwise game. A pair is
  kept only if it was sampled ``spqe.min_pair_samples`` times (at least twice: an SE)
  and its t-test survives Benjamini-Hochberg at false-discovery rate
  ``spqe.interaction_fdr`` over all ``L(L-1)/2`` pairs (default 1: no multiplicity
  filter, see the README); a dropped pair's interaction is split evenly into the two
  linear terms (``a`` is formed after the filter), its additive Shapley share.
- ``surrogate`` — a ridge quadratic fitted to every coalition the walks evaluated
  (:func:`~impq.estimate.surrogate.fit_quadratic`, penalty by leaving whole walks out):
  ``K = Γ/2`` and ``φ = β + Γ·1/2`` (the fitted game's Shapley values), so ``a = β``.
  Its cross-validated R² and the additive model's are its metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import stats

from impq.config import SpqeConfig
from impq.estimate.base import Estimate
from impq.estimate.permutation import (
    Walks,
    covariance_interactions,
    pair_statistics,
    walk_estimate,
)
from impq.estimate.surrogate import fit_quadratic
from impq.registry import lookup

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveFit",
    "PaperObjective",
    "SiiObjective",
    "SurrogateObjective",
    "fdr_pairs",
    "get_objective",
    "objective_methods",
    "objectives_for",
    "sii_objective",
    "walk_coalitions",
]


@dataclass(frozen=True)
class ObjectiveFit:
    """An objective's ``(φ, K)`` as an :class:`Estimate`, and its flat metrics."""

    estimate: Estimate
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """Builds one method's objective from sampled walks."""

    name: str
    walks: frozenset[str]
    """Walk kinds (``spqe.walks``) it can be built from."""

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """``(φ, K)`` and metrics from ``walks``, with the assembly options of ``config``."""
        ...


class PaperObjective:
    """IMPQ as published: Shapley values and the shrunk covariance of the marginals."""

    name = "impq"
    walks = frozenset({"prefix", "sii"})

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """``K = (1 - α)·C + α·diag(C)`` from the marginals (delta-method SEs)."""
        k, k_se = covariance_interactions(walks.marginals, config.alpha)
        meta = {"objective": self.name, "interaction_source": "covariance", "alpha": config.alpha}
        return ObjectiveFit(walk_estimate(walks, k, k_se, meta))


def fdr_pairs(
    estimate: np.ndarray, se: np.ndarray, count: np.ndarray, *, fdr: float, min_count: int
) -> np.ndarray:
    """Which pairs survive a Benjamini-Hochberg filter at false-discovery rate ``fdr``.

    Each pair ``i < j`` is one hypothesis ``E[estimate_ij] = 0``, tested by a two-sided t
    test with ``count_ij - 1`` degrees of freedom (``|estimate| / se``). A pair sampled
    fewer than ``min_count`` times, or whose SE is NaN, cannot be tested and is never kept
    (it still counts among the ``L(L-1)/2`` hypotheses); a zero SE with a nonzero estimate
    (an exact interaction) is kept. ``fdr = 1`` keeps every testable pair.

    Returns:
        (L, L) symmetric booleans, False on the diagonal.
    """
    n = estimate.shape[0]
    iu, ju = np.triu_indices(n, 1)
    e, s, c = np.abs(estimate[iu, ju]), se[iu, ju], count[iu, ju]
    testable = (c >= max(min_count, 2)) & np.isfinite(s)
    p = np.ones(len(e))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(s > 0, e / s, np.where(e > 0, np.inf, 0.0))
    p[testable] = 2 * stats.t.sf(t[testable], df=c[testable] - 1)
    keep = np.zeros(len(e), dtype=bool)
    if len(e):
        keep = testable & (stats.false_discovery_control(p, method="bh") <= fdr)
    out = np.zeros((n, n), dtype=bool)
    out[iu, ju] = out[ju, iu] = keep
    return out


def sii_objective(phi: np.ndarray, sii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(φ, K)`` of the SII form: ``K = SII/2`` with zero diagonal.

    With ``a_i = φ_i - Σ_j K_ij``, ``aᵀq + qᵀKq = v(S) - v(∅)`` for every coalition of a
    pairwise game (``v(S) = c + Σ_{i∈S} b_i + Σ_{i<j∈S} Q_ij``: ``φ_i = b_i + Σ_j Q_ij/2``
    and ``SII = Q``, so ``a = b``).
    """
    k = np.array(sii, dtype=np.float64) / 2
    np.fill_diagonal(k, 0.0)
    return np.asarray(phi, dtype=np.float64), k


class SiiObjective:
    """The pairwise Shapley interaction index, halved, significant pairs only."""

    name = "sii"
    walks = frozenset({"sii"})

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """``K = SII/2`` on the pairs that pass :func:`fdr_pairs`, zero elsewhere."""
        pairs = pair_statistics(walks)
        keep = fdr_pairs(
            pairs.mean,
            pairs.se,
            pairs.count,
            fdr=config.interaction_fdr,
            min_count=config.min_pair_samples,
        )
        phi = walks.marginals.mean(axis=0)
        _, k = sii_objective(phi, np.where(keep, pairs.mean, 0.0))
        n_pairs = walks.n_players * (walks.n_players - 1) // 2
        kept = int(keep.sum()) // 2
        meta = {
            "objective": self.name,
            "interaction_source": "shapley-interaction",
            "min_pair_samples": config.min_pair_samples,
            "interaction_fdr": config.interaction_fdr,
            "pairs_kept": kept,
        }
        estimate = walk_estimate(walks, k, pairs.se / 2, meta)
        return ObjectiveFit(estimate, {"sii_pairs_kept": kept, "sii_pairs": n_pairs})


def walk_coalitions(walks: Walks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every coalition the walks evaluated: (N, L) rows, (N,) values, (N,) walk index.

    The empty and full coalitions come first, once, with walk index -1.
    """
    m, steps, n = walks.coalitions.shape
    ends = np.array([np.zeros(n, dtype=bool), np.ones(n, dtype=bool)])
    rows = np.concatenate([ends, walks.coalitions.reshape(m * steps, n)])
    values = np.concatenate([walks.endpoints, walks.values.ravel()])
    groups = np.concatenate([[-1, -1], np.repeat(np.arange(m), steps)])
    return rows, values, groups


class SurrogateObjective:
    """A ridge quadratic surrogate fitted to the coalitions the walks evaluated."""

    name = "surrogate"
    walks = frozenset({"prefix", "sii"})

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """Fit, then ``φ = β + Γ·1/2`` and ``K = Γ/2`` (``a = β``); no standard errors."""
        rows, values, groups = walk_coalitions(walks)
        fit = fit_quadratic(rows, values, groups)
        n = walks.n_players
        k = fit.pair[:, 1, :, 1] / 2
        phi = fit.cost[:, 1] + k.sum(axis=1)
        estimate = Estimate(
            values=phi,
            values_se=np.full(n, np.nan),
            interactions=k,
            interactions_se=np.full((n, n), np.nan),
            n_evaluations=2 + walks.values.size,
            marginals=walks.marginals,
            meta={
                "objective": self.name,
                "interaction_source": "ridge-surrogate",
                "permutations": walks.n_permutations,
                "max_permutations": walks.max_permutations,
                "n_nonfinite": walks.n_nonfinite,
                "value_empty": float(walks.endpoints[0]),
                "value_full": float(walks.endpoints[1]),
                "ridge": fit.ridge,
                "cv_r2": fit.cv_r2,
                "additive_cv_r2": fit.additive_cv_r2,
                "n_coalitions": fit.n_coalitions,
                "constant": fit.constant,
            },
        )
        metrics = {
            "surrogate_cv_r2": fit.cv_r2,
            "additive_cv_r2": fit.additive_cv_r2,
            "surrogate_ridge": fit.ridge,
        }
        return ObjectiveFit(estimate, metrics)


OBJECTIVES: dict[str, str] = {
    "impq": "impq.estimate.objectives:PaperObjective",
    "sii": "impq.estimate.objectives:SiiObjective",
    "surrogate": "impq.estimate.objectives:SurrogateObjective",
}
"""Method name -> ``module:class``; the one place where objective methods are registered."""


def get_objective(name: str) -> Objective:
    """The objective registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    objective: Objective = lookup(OBJECTIVES, name, "objective")()
    return objective


def objectives_for(walk_kind: str) -> list[str]:
    """The registered objectives that can be built from walks of ``walk_kind``."""
    return [name for name in OBJECTIVES if walk_kind in get_objective(name).walks]


def objective_methods(methods: list[str], walk_kind: str) -> list[str]:
    """The objective methods among ``methods`` (in order), checked against the walks.

    Raises:
        ValueError: a method needs walks of another kind than ``walk_kind``.
    """
    chosen = [m for m in methods if m in OBJECTIVES]
    for name in chosen:
        needs = get_objective(name).walks
        if walk_kind not in needs:
            raise ValueError(
                f"method {name!r} needs spqe.walks in {sorted(needs)}, but spqe.walks is "
                f"{walk_kind!r}; set spqe.walks or drop {name!r} from eval.methods"
            )
    return chosen
