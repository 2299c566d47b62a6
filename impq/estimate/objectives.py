"""Interaction models: each assignment method's objective over the ladder, from the walks.

Every method predicts the loss increase of a level vector ``x`` (``x_i`` in ``0..S``, 0 =
the ladder's top) as a pairwise level function, a
:class:`~impq.estimate.LevelObjective`:

    f(x) = Σ_i cost[i, x_i] + Σ_{i<j} pair[i, x_i, j, x_j],

which the ``assign`` stage minimises under the budget (:class:`~impq.solve.BitProblem`).
The methods differ in ``(cost, pair)``, and each is assembled from the same sampled walks
without evaluating anything (:mod:`impq.estimate.forms` holds the maths):

- ``impq`` — the paper's covariance form, step by step: the players are the (block,
  step) pairs, ``φ`` their mean marginals, ``K = (1 - α)·C + α·diag(C)`` with ``C`` the
  covariance of the step marginals across walks, ``f = aᵀq + qᵀKq`` with ``a = φ - (K·1 -
  diag K)`` and ``q_{i,k} = [x_i >= k]``. For a two-level ladder: the marginals of a
  permutation sum to ``v(N) - v(∅)``, so every row of ``C`` sums to zero and the objective
  is ``φᵀq + Σ_{i∈S} C_ii + (1 - α)·Var_π(Σ_{i∈S} m_i)``: a mean-variance rule (README);
  over a ladder the same holds with the steps taken in place of ``S``. No significance
  filter: zeroing entries would break that identity and the positive semi-definiteness
  of the variance term, so the solver would chase the noise it left.
- ``sii`` — two-level ladders only: the pairwise Shapley interaction index (SII walks):
  ``K = SII/2`` with zero diagonal, so that ``f`` equals ``v(S) - v(∅)`` on every
  pairwise game. A pair is kept only if it was sampled ``spqe.min_pair_samples`` times
  (at least twice: an SE) and its t-test survives Benjamini-Hochberg at false-discovery
  rate ``spqe.interaction_fdr`` over all ``L(L-1)/2`` pairs (default 1: no multiplicity
  filter, see the README); a dropped pair's interaction is split evenly into the two
  linear terms (``a`` is formed after the filter), its additive Shapley share.
- ``surrogate`` — a ridge fit to every configuration the walks evaluated, on one-hot
  per-(block, level) indicators and their products between blocks
  (:func:`~impq.estimate.surrogate.fit_quadratic`, penalty by leaving whole walks out):
  ``cost = β``, ``pair = Γ``; its step values are the fitted game's. For two levels
  ``K = Γ/2`` and ``φ = β + Γ·1/2``. Its cross-validated R² and the additive model's are
  its metrics.
- :class:`AdditiveObjective` (``shapley``) — the step Shapley values alone: ``cost[i,
  x] = Σ_{k<=x} φ_{i,k}``, no pairs. Not registered in :data:`OBJECTIVES`: ``shapley``
  is the name of the Shapley-ranking baseline of the ``baselines`` stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from scipy import stats

from impq.config import SpqeConfig
from impq.estimate.forms import additive_form, covariance_form, level_shapley
from impq.estimate.level_objective import LevelObjective
from impq.estimate.permutation import Walks, covariance_interactions, pair_statistics
from impq.estimate.surrogate import fit_quadratic
from impq.registry import lookup

__all__ = [
    "OBJECTIVES",
    "AdditiveObjective",
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
    """A method's objective (its ``block_params`` ones until :meth:`to_objective`) and its
    flat metrics."""

    objective: LevelObjective
    metrics: dict[str, float] = field(default_factory=dict)

    def to_objective(
        self, block_params: np.ndarray, meta: dict[str, Any] | None = None
    ) -> LevelObjective:
        """The objective with the blocks' sizes and ``meta`` (provenance) added."""
        return replace(
            self.objective,
            block_params=np.asarray(block_params),
            meta={**self.objective.meta, **(meta or {})},
        )


class Objective(Protocol):
    """Builds one method's objective from sampled walks."""

    name: str
    walks: frozenset[str]
    """Walk kinds (``spqe.walks``) it can be built from."""

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """The objective and metrics from ``walks``, with the assembly options of ``config``."""
        ...


def _walk_meta(walks: Walks) -> dict[str, Any]:
    """What the walks were: their count, cost, non-finite values and endpoints."""
    m = walks.n_permutations
    return {
        "permutations": m,
        "max_permutations": walks.max_permutations,
        "n_evaluations": 2 + m * walks.values.shape[1],
        "n_nonfinite": walks.n_nonfinite,
        "value_empty": float(walks.endpoints[0]),
        "value_full": float(walks.endpoints[1]),
    }


def _step_values(walks: Walks) -> tuple[np.ndarray, np.ndarray]:
    """(L, S) mean step marginals and their standard errors."""
    m = walks.step_marginals
    return m.mean(axis=0), m.std(axis=0, ddof=1) / np.sqrt(walks.n_permutations)


def _ones(walks: Walks) -> np.ndarray:
    return np.ones(walks.n_players, dtype=np.int64)


class PaperObjective:
    """IMPQ as published, step by step: step Shapley values and the shrunk covariance of
    the step marginals."""

    name = "impq"
    walks = frozenset({"prefix", "sii"})

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """:func:`~impq.estimate.forms.covariance_form` of the step marginals
        (delta-method SEs for the pairs)."""
        cost, pair, pair_se = covariance_form(walks.step_marginals, config.alpha)
        phi, phi_se = _step_values(walks)
        diag = None
        if walks.n_steps == 1:
            diag = np.diag(covariance_interactions(walks.marginals, config.alpha)[0]).copy()
        objective = LevelObjective(
            ladder=walks.ladder,
            cost=cost,
            pair=pair,
            values=phi,
            values_se=phi_se,
            pair_se=pair_se,
            block_params=_ones(walks),
            self_interaction=diag,
            meta={
                "objective": self.name,
                "interaction_source": "covariance",
                "alpha": config.alpha,
                **_walk_meta(walks),
            },
        )
        return ObjectiveFit(objective)


class AdditiveObjective:
    """The step Shapley values alone, interactions ignored: what the interactions buy."""

    name = "shapley"
    walks = frozenset({"prefix", "sii"})

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """:func:`~impq.estimate.forms.additive_form` of the mean step marginals."""
        phi, phi_se = _step_values(walks)
        cost, pair = additive_form(phi)
        objective = LevelObjective(
            ladder=walks.ladder,
            cost=cost,
            pair=pair,
            values=phi,
            values_se=phi_se,
            pair_se=np.zeros(pair.shape),
            block_params=_ones(walks),
            self_interaction=np.zeros(walks.n_players) if walks.n_steps == 1 else None,
            meta={"objective": self.name, "interaction_source": "none", **_walk_meta(walks)},
        )
        return ObjectiveFit(objective)


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
    """The pairwise Shapley interaction index, halved, significant pairs only (two-level
    ladders: SII walks exist for those alone)."""

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
        phi, phi_se = _step_values(walks)
        _, k = sii_objective(phi[:, 0], np.where(keep, pairs.mean, 0.0))
        n_pairs = walks.n_players * (walks.n_players - 1) // 2
        kept = int(keep.sum()) // 2
        meta = {
            "objective": self.name,
            "interaction_source": "shapley-interaction",
            "min_pair_samples": config.min_pair_samples,
            "interaction_fdr": config.interaction_fdr,
            "pairs_kept": kept,
            **_walk_meta(walks),
        }
        objective = LevelObjective.from_two_level(
            phi[:, 0],
            k,
            _ones(walks),
            walks.ladder,
            phi_se=phi_se[:, 0],
            interactions_se=pairs.se / 2,
            meta=meta,
        )
        return ObjectiveFit(objective, {"sii_pairs_kept": kept, "sii_pairs": n_pairs})


def walk_coalitions(walks: Walks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every configuration the walks evaluated: (N, L) level rows, (N,) values, (N,) walk
    index.

    The all-top and all-bottom configurations come first, once, with walk index -1.
    """
    m, steps, n = walks.coalitions.shape
    dtype = walks.coalitions.dtype
    ends = np.array([np.zeros(n), np.full(n, walks.n_steps)]).astype(dtype)
    rows = np.concatenate([ends, walks.coalitions.reshape(m * steps, n)])
    values = np.concatenate([walks.endpoints, walks.values.ravel()])
    groups = np.concatenate([[-1, -1], np.repeat(np.arange(m), steps)])
    return rows, values, groups


class SurrogateObjective:
    """A ridge pairwise surrogate fitted to the configurations the walks evaluated."""

    name = "surrogate"
    walks = frozenset({"prefix", "sii"})

    def build(self, walks: Walks, config: SpqeConfig) -> ObjectiveFit:
        """Fit, then ``cost = β``, ``pair = Γ`` and the fitted game's step values; no
        standard errors."""
        rows, values, groups = walk_coalitions(walks)
        fit = fit_quadratic(rows, values, groups, n_steps=walks.n_steps)
        n, s = walks.n_players, walks.n_steps
        objective = LevelObjective(
            ladder=walks.ladder,
            cost=fit.cost,
            pair=fit.pair,
            values=level_shapley(fit.cost, fit.pair),
            values_se=np.full((n, s), np.nan),
            pair_se=np.full(fit.pair.shape, np.nan),
            block_params=_ones(walks),
            self_interaction=np.zeros(n) if s == 1 else None,
            meta={
                "objective": self.name,
                "interaction_source": "ridge-surrogate",
                **_walk_meta(walks),
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
        return ObjectiveFit(objective, metrics)


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
