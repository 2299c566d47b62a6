"""Permutation sampling: SPQE (Shapley values + covariance interactions) and permutation SII.

Both walk random permutations of the players, adding one player at a time to the
coalition (for the model game: lowering one more block to low precision); the change in
value at each step is that player's marginal contribution. The empty and the full
coalition are the same in every permutation, so they are evaluated once: a permutation
costs ``n - 1`` evaluations (SPQE) or ``2(n - 1)`` (SII), plus 2 for the whole run.

Non-finite values (an NLL that overflowed) are replaced, before marginals are taken,
by the largest finite value seen in the run: the configuration counts as the worst one
observed. Every permutation's marginals then still sum to ``v(N) - v(∅)`` and the
Shapley vector stays finite; the count is reported as ``n_nonfinite``.

The walks of both estimators share their prefix chain: permutation ``k`` of a run
derives from the run seed and ``k`` alone, and an SII walk evaluates every prefix a
prefix walk does (plus ``S ∪ {b}`` for each adjacent pair). :class:`Walks` is that
common view, from which every interaction model (:mod:`impq.estimate.objectives`) is
assembled.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from impq.estimate.base import Estimate
from impq.estimate.checkpoint import Checkpoint
from impq.game.base import Game

__all__ = [
    "WALK_SAMPLERS",
    "PairStatistics",
    "PermutationSampling",
    "PermutationSamplingSII",
    "PermutationWalk",
    "Walks",
    "cap_nonfinite",
    "covariance_interactions",
    "pair_statistics",
    "seeded_permutations",
    "walk_estimate",
    "walks_from_samples",
]

log = logging.getLogger(__name__)


def cap_nonfinite(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``values`` with NaN/inf replaced by the largest finite entry; and how many were.

    Raises:
        RuntimeError: no entry is finite.
    """
    bad = ~np.isfinite(values)
    n_bad = int(bad.sum())
    if not n_bad:
        return values, 0
    if n_bad == values.size:
        raise RuntimeError("every value of the game is NaN or inf; nothing can be estimated")
    out = values.copy()
    out[bad] = values[~bad].max()
    return out, n_bad


def covariance_interactions(marginals: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The paper's interaction matrix ``K = (1 - α)·C + α·diag(C)`` and its standard errors.

    ``C`` is the covariance (ddof 1) of the per-permutation marginals. The standard error
    of each entry comes from the delta method: ``C_ij`` is (M/(M-1) times) the mean of
    ``z_k = (x_ki - x̄_i)(x_kj - x̄_j)`` over permutations ``k``, so its SE is
    ``std(z) / sqrt(M) · M/(M-1)``; off-diagonal SEs are scaled by ``1 - α`` like ``K``.

    Args:
        marginals: (M, L) marginal contributions, M ≥ 2.
        alpha: shrinkage toward the diagonal, in [0, 1].
    """
    m = len(marginals)
    centred = marginals - marginals.mean(axis=0)
    z = centred[:, :, None] * centred[:, None, :]
    cov = z.sum(axis=0) / (m - 1)
    cov_se = z.std(axis=0, ddof=1) / np.sqrt(m) * m / (m - 1)
    off = ~np.eye(marginals.shape[1], dtype=bool)
    k, k_se = cov.copy(), cov_se.copy()
    k[off] *= 1 - alpha
    k_se[off] *= 1 - alpha
    return k, k_se


def seeded_permutations(seed: int, indices: range | np.ndarray, n: int) -> np.ndarray:
    """Permutations number ``indices`` of ``n`` players for the run seeded ``seed``.

    Permutation ``k`` depends on ``(seed, k)`` alone, so any subset of a run's
    permutations (a chunk on one worker) is drawn without drawing the others, and the
    same seed gives the same permutations however the work is split.
    """
    return np.stack([np.random.default_rng([seed, int(k)]).permutation(n) for k in indices])


def run_seed(rng: np.random.Generator | int) -> int:
    """The run seed of :func:`seeded_permutations`: ``rng`` itself, or one draw from it."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63))
    if rng < 0:
        raise ValueError(f"seed must be non-negative, got {rng}")
    return int(rng)


@dataclass(frozen=True)
class Walks:
    """Sampled permutation walks with capped values, as coalitions and as marginals.

    Attributes:
        kind: the walk kind (a key of :data:`WALK_SAMPLERS`): ``prefix`` or ``sii``.
        permutations: (M, L) the permutations walked.
        coalitions: (M, s, L) the coalitions each walk evaluated, endpoints excluded.
        values: (M, s) their values, non-finite ones capped.
        endpoints: (2,) capped values of the empty and the full coalition.
        prefix: (M, L + 1) capped value of each prefix of each permutation, endpoints
            included.
        marginals: (M, L) marginal contribution of each player in each permutation.
        n_nonfinite: values that were NaN/inf before capping (endpoints included).
        max_permutations: permutations the budget bought (``M`` may be fewer).
    """

    kind: str
    permutations: np.ndarray
    coalitions: np.ndarray
    values: np.ndarray
    endpoints: np.ndarray
    prefix: np.ndarray
    marginals: np.ndarray
    n_nonfinite: int
    max_permutations: int

    @property
    def n_players(self) -> int:
        """Number of players L."""
        return int(self.permutations.shape[1])

    @property
    def n_permutations(self) -> int:
        """Number of walks M."""
        return int(self.permutations.shape[0])


@dataclass(frozen=True)
class PairStatistics:
    """Per-pair SII samples of SII walks: mean, standard error and sample count.

    ``mean`` is 0 for a pair never seen; ``se`` is NaN for a pair seen fewer than twice
    (no variance can be estimated); the diagonal is 0 in all three.
    """

    mean: np.ndarray
    se: np.ndarray
    count: np.ndarray


def pair_statistics(walks: Walks) -> PairStatistics:
    """The permutation SII estimate of every pair from SII walks.

    In a random permutation, a pair ``{i, j}`` sits next to each other with probability
    ``2/n``, and the set ``S`` of players before it is then distributed exactly as the
    SII weights ``|S|!(n-|S|-2)!/(n-1)!``. An SII walk evaluates, for every adjacent
    pair ``(a, b)`` after prefix ``S``, the coalition ``S ∪ {b}`` beside the prefixes;
    the average of ``v(S∪ab) - v(S∪a) - v(S∪b) + v(S)`` over the walks where the pair
    was adjacent is an unbiased SII estimate (as shapiq's permutation SII approximator).

    Raises:
        ValueError: the walks are prefix walks (they hold no ``S ∪ {b}``).
    """
    if walks.kind != "sii":
        raise ValueError(
            f"the pairwise Shapley interaction index needs SII walks, got {walks.kind!r} "
            "walks; sample with spqe.walks: sii"
        )
    n = walks.n_players
    perms, prefix, extras = walks.permutations, walks.prefix, walks.values[:, 0::2]
    # delta[k, t] for the pair (perm[k, t], perm[k, t + 1]) after prefix perm[k, :t]
    delta = (prefix[:, 2:] - prefix[:, 1:-1] - extras + prefix[:, :-2]).ravel()
    i, j = perms[:, :-1].ravel(), perms[:, 1:].ravel()
    count, total, total_sq = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    for a, b in ((i, j), (j, i)):
        np.add.at(count, (a, b), 1)
        np.add.at(total, (a, b), delta)
        np.add.at(total_sq, (a, b), delta**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        var = (total_sq - count * mean**2) / (count - 1)
        se = np.where(count >= 2, np.sqrt(np.clip(var, 0, None) / count), np.nan)
    np.fill_diagonal(se, 0.0)
    return PairStatistics(mean=mean, se=se, count=count.astype(np.int64))


class PermutationWalk:
    """Base of the permutation estimators: budget, seeded permutations, checkpoints,
    progress and the stopping rule (every Shapley SE below ``tolerance``, checked from
    ``min_permutations`` on)."""

    name = ""
    kind = ""
    """The walk kind, the key of this class in :data:`WALK_SAMPLERS`."""
    steps_per_permutation_factor = 1

    def __init__(
        self,
        tolerance: float | None = None,
        min_permutations: int = 10,
        checkpoint: Checkpoint | None = None,
        progress: bool = False,
    ) -> None:
        if tolerance is not None and tolerance <= 0:
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        self.tolerance = tolerance
        self.min_permutations = max(2, min_permutations)
        self.checkpoint = checkpoint
        self.progress = progress

    def evaluations_per_permutation(self, n_players: int) -> int:
        """Evaluations one permutation costs, beyond the two shared endpoints."""
        return self.steps_per_permutation_factor * (n_players - 1)

    def budget_for(self, n_players: int, permutations: int) -> int:
        """The evaluation budget that buys exactly ``permutations`` permutations."""
        return 2 + permutations * self.evaluations_per_permutation(n_players)

    def permutation_count(self, n_players: int, budget: int) -> int:
        """The permutations ``budget`` evaluations buy (warning when fewer than ``2L``).

        Raises:
            ValueError: fewer than 2 players, or the budget does not buy two permutations.
        """
        n = n_players
        if n < 2:
            raise ValueError("permutation sampling needs at least 2 players")
        max_perms = (budget - 2) // self.evaluations_per_permutation(n)
        if max_perms < 2:
            raise ValueError(
                f"budget {budget} buys {max(max_perms, 0)} permutations of {n} players; "
                f"need at least {self.budget_for(n, 2)} evaluations for two"
            )
        if max_perms < 2 * n:
            log.warning(
                "%d permutations for %d players (< 2L): the covariance of the marginals has "
                "rank ≤ %d and is mostly noise",
                max_perms,
                n,
                max_perms - 1,
            )
        return int(max_perms)

    def walk(self, game: Game, perms: np.ndarray) -> np.ndarray:
        """(len(perms), steps) values of the walks along ``perms`` (one chunk of a run)."""
        steps = self.evaluations_per_permutation(perms.shape[1])
        if not len(perms):
            return np.empty((0, steps))
        return np.stack([game(self.coalitions(p)) for p in perms])

    def stopping_point(
        self, perms: np.ndarray, walks: np.ndarray, endpoints: np.ndarray, start: int = 0
    ) -> int | None:
        """The first count ``d > start`` of permutations (of these, a prefix of the run)
        at which :meth:`sample` stops on ``tolerance``; None when it would go on.

        So a run whose permutations are computed out of order (chunks on workers) stops
        where the one-after-another run stops.
        """
        if self.tolerance is None:
            return None
        for done in range(max(start + 1, self.min_permutations), len(walks) + 1):
            if self._max_se(perms[:done], walks[:done], endpoints) < self.tolerance:
                return done
        return None

    def coalitions(self, perm: np.ndarray) -> np.ndarray:
        """Coalitions one permutation evaluates, in order, endpoints excluded."""
        raise NotImplementedError

    def _prefix_values(self, steps: np.ndarray) -> np.ndarray:
        """(M, n-1) values of the inner prefixes of each walk, from its step values."""
        raise NotImplementedError

    def _interactions(self, walks: Walks) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(interactions, their SEs, meta) of this estimator from the walks."""
        raise NotImplementedError

    def _marginals(
        self, perms: np.ndarray, steps: np.ndarray, endpoints: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(M, L) marginals and (M, L+1) prefix values along each permutation."""
        m = len(perms)
        prefix = np.column_stack(
            [np.full(m, endpoints[0]), self._prefix_values(steps), np.full(m, endpoints[1])]
        )
        marginals = np.empty(perms.shape)
        np.put_along_axis(marginals, perms, np.diff(prefix, axis=1), axis=1)
        return marginals, prefix

    def estimate(self, game: Game, budget: int, rng: np.random.Generator | int) -> Estimate:
        """Sample permutations until the budget (or the tolerance) is reached.

        The same as :meth:`assemble` of :meth:`sample`.

        Raises:
            ValueError: the budget does not buy two permutations.
        """
        return self.assemble(self.sample(game, budget, rng))

    def sample(
        self, game: Game, budget: int, rng: np.random.Generator | int
    ) -> dict[str, np.ndarray]:
        """The raw walks: ``permutations`` (M, L), ``walks`` (M, steps), ``endpoints``
        (2,) and ``max_permutations`` (scalar), as :meth:`assemble` takes them.

        ``rng`` is the run seed (or a generator that draws one); permutation ``k``
        derives from it and ``k`` alone (:func:`seeded_permutations`), so a run resumed
        from a checkpoint uses the same ones and ends with exactly the same numbers.

        Raises:
            ValueError: the budget does not buy two permutations.
        """
        n = game.n_players
        per_perm = self.evaluations_per_permutation(n)
        max_perms = self.permutation_count(n, budget)
        all_perms = seeded_permutations(run_seed(rng), range(max_perms), n)

        start_evals = game.n_evaluations
        state = self._resume(all_perms, n)
        endpoints: np.ndarray
        walks: np.ndarray
        if state is None:
            endpoints = game(np.array([np.zeros(n, bool), np.ones(n, bool)]))
            walks = np.empty((0, per_perm))
        else:
            endpoints, walks = state
        done = len(walks)

        bar = tqdm(
            total=max_perms, initial=done, desc=self.name, unit="perm", disable=not self.progress
        )
        t0 = time.perf_counter()
        max_se = self._max_se(all_perms[:done], walks, endpoints) if done >= 2 else np.inf
        while done < max_perms and not (
            self.tolerance is not None and done >= self.min_permutations and max_se < self.tolerance
        ):
            walk = game(self.coalitions(all_perms[done]))
            walks = np.concatenate([walks, walk[None, :]])
            done += 1
            if self.checkpoint is not None:
                self.checkpoint.save(
                    {"permutations": all_perms[:done], "walks": walks, "endpoints": endpoints}
                )
            if done >= 2 and (self.progress or self.tolerance is not None):
                max_se = self._max_se(all_perms[:done], walks, endpoints)
            evals = game.n_evaluations - start_evals
            bar.set_postfix(
                evals_per_s=f"{evals / max(time.perf_counter() - t0, 1e-9):.1f}",
                max_se=f"{max_se:.3g}",
            )
            bar.update(1)
        bar.close()
        return {
            "permutations": all_perms[:done],
            "walks": walks,
            "endpoints": np.asarray(endpoints),
            "max_permutations": np.array(max_perms),
        }

    def walks(self, samples: dict[str, np.ndarray]) -> Walks:
        """The :class:`Walks` view of :meth:`sample`'s output, non-finite values capped.

        Raises:
            ValueError: the walks are not this estimator's (another walk length).
        """
        perms, steps = samples["permutations"], samples["walks"]
        endpoints, max_perms = samples["endpoints"], int(samples["max_permutations"])
        done, n = perms.shape
        if steps.shape != (done, self.evaluations_per_permutation(n)):
            raise ValueError(
                f"walks of shape {steps.shape} were not sampled by {self.name} "
                f"({self.evaluations_per_permutation(n)} steps per permutation)"
            )
        raw = np.concatenate([endpoints, steps.ravel()])
        capped, n_bad = cap_nonfinite(raw)
        if n_bad:
            log.warning(
                "%d of %d values were NaN/inf; replaced by the largest finite value %.4g",
                n_bad,
                raw.size,
                raw[np.isfinite(raw)].max(),
            )
        endpoints_c, steps_c = capped[:2], capped[2:].reshape(steps.shape)
        marginals, prefix = self._marginals(perms, steps_c, endpoints_c)
        coalitions = (
            np.stack([self.coalitions(p) for p in perms])
            if done
            else np.empty((0, steps.shape[1], n), dtype=bool)
        )
        return Walks(
            kind=self.kind,
            permutations=perms,
            coalitions=coalitions,
            values=steps_c,
            endpoints=endpoints_c,
            prefix=prefix,
            marginals=marginals,
            n_nonfinite=n_bad,
            max_permutations=max_perms,
        )

    def assemble(self, samples: dict[str, np.ndarray]) -> Estimate:
        """Values, interactions and their standard errors from :meth:`sample`'s walks.

        Raises:
            ValueError: the walks are not this estimator's (another walk length).
        """
        return self.assemble_walks(self.walks(samples))

    def assemble_walks(self, walks: Walks) -> Estimate:
        """:meth:`assemble` of walks already turned into :class:`Walks`."""
        interactions, interactions_se, meta = self._interactions(walks)
        return walk_estimate(walks, interactions, interactions_se, {"estimator": self.name, **meta})

    def _resume(self, all_perms: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        if self.checkpoint is None:
            return None
        saved = self.checkpoint.load()
        if saved is None:
            return None
        perms, walks = saved["permutations"], saved["walks"]
        if (
            len(perms) > len(all_perms)
            or not np.array_equal(perms, all_perms[: len(perms)])
            or walks.shape != (len(perms), self.evaluations_per_permutation(n))
        ):
            log.warning(
                "checkpoint %s does not match this run; starting over", self.checkpoint.path
            )
            return None
        log.info("resuming from %s: %d permutations done", self.checkpoint.path, len(perms))
        return saved["endpoints"], walks

    def _max_se(self, perms: np.ndarray, walks: np.ndarray, endpoints: np.ndarray) -> float:
        raw, _ = cap_nonfinite(np.concatenate([endpoints, walks.ravel()]))
        marginals, _ = self._marginals(perms, raw[2:].reshape(walks.shape), raw[:2])
        return float((marginals.std(axis=0, ddof=1) / np.sqrt(len(perms))).max())


def walk_estimate(
    walks: Walks, interactions: np.ndarray, interactions_se: np.ndarray, meta: dict[str, Any]
) -> Estimate:
    """An :class:`Estimate` whose values are the walks' mean marginals, with ``interactions``.

    ``n_evaluations`` is what the walks cost (their kind's steps per permutation, plus
    the two shared endpoints); ``meta`` is added to the walks' own facts.
    """
    m = walks.n_permutations
    return Estimate(
        values=walks.marginals.mean(axis=0),
        values_se=walks.marginals.std(axis=0, ddof=1) / np.sqrt(m),
        interactions=interactions,
        interactions_se=interactions_se,
        n_evaluations=2 + m * walks.values.shape[1],
        marginals=walks.marginals,
        meta={
            "permutations": m,
            "max_permutations": walks.max_permutations,
            "n_nonfinite": walks.n_nonfinite,
            "value_empty": float(walks.endpoints[0]),
            "value_full": float(walks.endpoints[1]),
            **meta,
        },
    )


class PermutationSampling(PermutationWalk):
    """SPQE: Shapley values from permutation walks; interactions from the covariance of
    the marginals, shrunk toward its diagonal by ``alpha`` (see
    :func:`covariance_interactions`)."""

    name = "permutation"
    kind = "prefix"
    steps_per_permutation_factor = 1

    def __init__(self, alpha: float = 0.5, **options: Any) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        super().__init__(**options)
        self.alpha = alpha

    def coalitions(self, perm: np.ndarray) -> np.ndarray:
        n = len(perm)
        steps = np.zeros((n - 1, n), dtype=bool)
        for t in range(n - 1):
            steps[t:, perm[t]] = True
        return steps

    def _prefix_values(self, steps: np.ndarray) -> np.ndarray:
        return steps

    def _interactions(self, walks: Walks) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        k, k_se = covariance_interactions(walks.marginals, self.alpha)
        return k, k_se, {"interaction_source": "covariance", "alpha": self.alpha}


class PermutationSamplingSII(PermutationWalk):
    """Shapley values and the pairwise Shapley interaction index from permutation walks.

    Each walk evaluates, beside the prefixes, ``S ∪ {b}`` for every adjacent pair
    ``(a, b)`` after prefix ``S`` (see :func:`pair_statistics`). The diagonal is zero;
    pairs seen fewer than twice have a NaN standard error (value 0 if unseen).
    """

    name = "permutation-sii"
    kind = "sii"
    steps_per_permutation_factor = 2

    def coalitions(self, perm: np.ndarray) -> np.ndarray:
        n = len(perm)
        rows = []
        prefix = np.zeros(n, dtype=bool)
        for t in range(n - 1):
            extra = prefix.copy()
            extra[perm[t + 1]] = True
            rows.append(extra)  # S ∪ {b}
            prefix = prefix.copy()
            prefix[perm[t]] = True
            rows.append(prefix)  # S ∪ {a}
        return np.array(rows)

    def _prefix_values(self, steps: np.ndarray) -> np.ndarray:
        return steps[:, 1::2]

    def _interactions(self, walks: Walks) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        stats = pair_statistics(walks)
        off = ~np.eye(walks.n_players, dtype=bool)
        return (
            stats.mean,
            stats.se,
            {
                "interaction_source": "shapley-interaction",
                "min_pair_samples": int(stats.count[off].min()),
            },
        )


WALK_SAMPLERS: dict[str, type[PermutationWalk]] = {
    PermutationSampling.kind: PermutationSampling,
    PermutationSamplingSII.kind: PermutationSamplingSII,
}
"""Walk kind (``spqe.walks``) -> the estimator that samples walks of that kind."""


def walks_from_samples(samples: dict[str, np.ndarray]) -> Walks:
    """The :class:`Walks` of raw samples of either kind, told apart by the walk length.

    Raises:
        ValueError: the walk length is neither kind's (``L - 1`` or ``2(L - 1)`` steps).
    """
    n = samples["permutations"].shape[1]
    steps = samples["walks"].shape[1]
    for cls in WALK_SAMPLERS.values():
        if cls().evaluations_per_permutation(n) == steps:
            return cls().walks(samples)
    raise ValueError(
        f"walks of {steps} steps for {n} players are neither prefix walks ({n - 1} steps) "
        f"nor SII walks ({2 * (n - 1)} steps)"
    )
