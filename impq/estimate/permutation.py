"""Permutation sampling: SPQE (Shapley values + covariance interactions) and permutation SII.

Both walk random permutations of the players, adding one player at a time to the
coalition (for the model game: lowering one more block to low precision); the change in
value at each step is that player's marginal contribution. The empty and the full
coalition are the same in every permutation, so they are evaluated once: a permutation
costs ``n - 1`` evaluations (SPQE) or ``2(n - 1)`` (SII), plus 2 for the whole run.

Over a ladder of ``S + 1`` levels (precisions ``ladder[0] > ... > ladder[S]``), a walk
is a random order of the multiset in which every player appears ``S`` times; player
``i``'s ``k``-th occurrence lowers it from level ``k - 1`` to level ``k``. Its change in
value is the marginal of step ``(i, k)``, and the mean over walks is the Shapley value
of the game whose players are the steps, under the precedence constraints that a
player's steps come in order. A walk costs ``L·S - 1`` evaluations; for ``S = 1`` it is
the permutation walk above, to the bit.

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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from impq.estimate.base import Estimate
from impq.estimate.checkpoint import Checkpoint
from impq.estimate.driver import drive_walks
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
    "game_ladder",
    "level_coalitions",
    "pair_statistics",
    "seeded_permutations",
    "step_indices",
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


def seeded_permutations(
    seed: int, indices: range | np.ndarray, n: int, steps: int = 1
) -> np.ndarray:
    """Walk orders number ``indices`` of ``n`` players for the run seeded ``seed``.

    Each is a random order of the multiset in which every player appears ``steps``
    times, shape ``(len(indices), n·steps)``; with one step, a permutation. Order ``k``
    depends on ``(seed, k)`` alone, so any subset of a run's walks (a chunk on one
    worker) is drawn without drawing the others, and the same seed gives the same walks
    however the work is split.
    """
    if steps < 1:
        raise ValueError(f"a walk needs at least one step per player, got {steps}")
    players = np.repeat(np.arange(n), steps)
    return np.stack([np.random.default_rng([seed, int(k)]).permutation(players) for k in indices])


def step_indices(orders: np.ndarray, n_players: int) -> np.ndarray:
    """``(M, T)``: which step of its player each entry of the walk orders ``orders`` is
    (0 for a player's first occurrence, 1 for its second, ...)."""
    onehot = orders[..., None] == np.arange(n_players)
    seen = np.cumsum(onehot, axis=-2) - 1
    return np.take_along_axis(seen, orders[..., None], axis=-1)[..., 0]


def level_coalitions(order: np.ndarray, n_players: int, n_steps: int) -> np.ndarray:
    """The inner prefixes of the walk ``order`` as level vectors, ``(L·S - 1, L)``:
    row ``t`` holds each player's level after the first ``t + 1`` steps. Boolean for
    one step (coalitions), ``uint8`` levels otherwise."""
    onehot = np.zeros((len(order) - 1, n_players), dtype=np.int64)
    onehot[np.arange(len(order) - 1), order[:-1]] = 1
    return np.cumsum(onehot, axis=0).astype(bool if n_steps == 1 else np.uint8)


def run_seed(rng: np.random.Generator | int) -> int:
    """The run seed of :func:`seeded_permutations`: ``rng`` itself, or one draw from it."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63))
    if rng < 0:
        raise ValueError(f"seed must be non-negative, got {rng}")
    return int(rng)


@dataclass(frozen=True)
class Walks:
    """Sampled walks with capped values, as level vectors and as marginals.

    Over a two-level ladder (the paper's game) a walk is a permutation of the players and
    a level vector a coalition (boolean); over ``S + 1`` levels a walk is an order of
    ``L·S`` steps (see the module docstring).

    Attributes:
        kind: the walk kind (a key of :data:`WALK_SAMPLERS`): ``prefix`` or ``sii``.
        ladder: the precisions of the levels, top first (nominal ``(S, ..., 0)`` for a
            game without precisions).
        permutations: (M, L·S) the walk orders (for one step: the permutations walked).
        coalitions: (M, s, L) the level vectors each walk evaluated, endpoints excluded
            (boolean for one step, ``uint8`` otherwise).
        values: (M, s) their values, non-finite ones capped.
        endpoints: (2,) capped values of the all-top and the all-bottom configuration.
        prefix: (M, L·S + 1) capped value of each prefix of each walk, endpoints
            included.
        step_marginals: (M, L, S) marginal of player ``i``'s ``k``-th step in each walk.
        n_nonfinite: values that were NaN/inf before capping (endpoints included).
        max_permutations: walks the budget bought (``M`` may be fewer).
    """

    kind: str
    ladder: tuple[int, ...]
    permutations: np.ndarray
    coalitions: np.ndarray
    values: np.ndarray
    endpoints: np.ndarray
    prefix: np.ndarray
    step_marginals: np.ndarray
    n_nonfinite: int
    max_permutations: int

    @property
    def n_steps(self) -> int:
        """Steps per player S (``len(ladder) - 1``)."""
        return len(self.ladder) - 1

    @property
    def marginals(self) -> np.ndarray:
        """(M, L) marginal of each player in each walk, its steps summed."""
        return self.step_marginals.sum(axis=2)

    @property
    def n_players(self) -> int:
        """Number of players L."""
        return int(self.step_marginals.shape[1])

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


@dataclass(frozen=True)
class _Walked:
    """One chunk of walks computed in this process (a :class:`ChunkOutcome`)."""

    indices: np.ndarray
    walks: np.ndarray


def game_ladder(game: Game) -> tuple[int, ...]:
    """The precisions of ``game``'s levels, top first: its ``ladder`` when it has one
    (the model game), else the nominal ``(S, ..., 1, 0)``."""
    ladder = getattr(game, "ladder", None)
    if ladder is not None:
        return tuple(int(b) for b in ladder)
    return tuple(range(game.n_levels - 1, -1, -1))


class PermutationWalk:
    """Base of the walk estimators: budget, seeded walks, and the stopping rule (every
    Shapley SE below ``tolerance``, checked from ``min_permutations`` on); the sampling
    itself is the driver's (:func:`~impq.estimate.driver.drive_walks`)."""

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

    def check_steps(self, n_steps: int) -> None:
        """Raise ValueError when this kind of walk cannot walk ``n_steps`` steps per player."""
        if n_steps < 1:
            raise ValueError(f"a walk needs at least one step per player, got {n_steps}")

    def evaluations_per_permutation(self, n_players: int, n_steps: int = 1) -> int:
        """Evaluations one walk costs, beyond the two shared endpoints."""
        self.check_steps(n_steps)
        return self.steps_per_permutation_factor * (n_players * n_steps - 1)

    def budget_for(self, n_players: int, permutations: int, n_steps: int = 1) -> int:
        """The evaluation budget that buys exactly ``permutations`` walks."""
        return 2 + permutations * self.evaluations_per_permutation(n_players, n_steps)

    def permutation_count(self, n_players: int, budget: int, n_steps: int = 1) -> int:
        """The walks ``budget`` evaluations buy (warning when fewer than ``2L``).

        Raises:
            ValueError: fewer than 2 players, or the budget does not buy two walks.
        """
        n = n_players
        if n < 2:
            raise ValueError("permutation sampling needs at least 2 players")
        max_perms = (budget - 2) // self.evaluations_per_permutation(n, n_steps)
        if max_perms < 2:
            raise ValueError(
                f"budget {budget} buys {max(max_perms, 0)} walks of {n} players; "
                f"need at least {self.budget_for(n, 2, n_steps)} evaluations for two"
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
        steps = self.evaluations_per_permutation(game.n_players, game.n_levels - 1)
        if not len(perms):
            return np.empty((0, steps))
        return np.stack([game(self.coalitions(p)) for p in perms])

    def stopping_point(
        self, perms: np.ndarray, walks: np.ndarray, endpoints: np.ndarray, start: int = 0
    ) -> int | None:
        """The first count ``d > start`` of walks (of these, a prefix of the run) at
        which the run stops on ``tolerance``; None when it would go on.

        So a run whose walks are computed out of order (chunks on workers) stops where
        the one-after-another run stops.
        """
        if self.tolerance is None:
            return None
        for done in range(max(start + 1, self.min_permutations), len(walks) + 1):
            if self._max_se(perms[:done], walks[:done], endpoints) < self.tolerance:
                return done
        return None

    def coalitions(self, perm: np.ndarray) -> np.ndarray:
        """Configurations one walk evaluates, in order, endpoints excluded."""
        raise NotImplementedError

    def _prefix_values(self, steps: np.ndarray) -> np.ndarray:
        """(M, T-1) values of the inner prefixes of each walk, from its step values."""
        raise NotImplementedError

    def _interactions(self, walks: Walks) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(interactions, their SEs, meta) of this estimator from the walks."""
        raise NotImplementedError

    def _marginals(
        self, perms: np.ndarray, steps: np.ndarray, endpoints: np.ndarray, n_steps: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(M, L, S) step marginals and (M, L·S+1) prefix values along each walk."""
        m, length = perms.shape
        n = length // n_steps
        prefix = np.column_stack(
            [np.full(m, endpoints[0]), self._prefix_values(steps), np.full(m, endpoints[1])]
        )
        marginals = np.zeros((m, n, n_steps))
        rows = np.arange(m)[:, None]
        marginals[rows, perms, step_indices(perms, n)] = np.diff(prefix, axis=1)
        return marginals, prefix

    def estimate(self, game: Game, budget: int, rng: np.random.Generator | int) -> Estimate:
        """Sample walks until the budget (or the tolerance) is reached.

        The same as :meth:`assemble` of :meth:`sample`.

        Raises:
            ValueError: the budget does not buy two walks.
        """
        return self.assemble(self.sample(game, budget, rng))

    def sample(
        self, game: Game, budget: int, rng: np.random.Generator | int
    ) -> dict[str, np.ndarray]:
        """The raw walks: ``permutations`` (M, L·S) walk orders, ``walks`` (M, steps),
        ``endpoints`` (2,), ``max_permutations`` (scalar) and ``ladder``, as
        :meth:`assemble` takes them. A game of ``S + 1`` levels is walked over its ladder.

        ``rng`` is the run seed (or a generator that draws one); walk ``k`` derives from
        it and ``k`` alone (:func:`seeded_permutations`), so a run resumed from a
        checkpoint uses the same ones and ends with exactly the same numbers.

        Raises:
            ValueError: the budget does not buy two walks, or this kind of walk cannot
                walk the game's levels.
        """
        n, n_steps = game.n_players, game.n_levels - 1
        max_perms = self.permutation_count(n, budget, n_steps)
        orders = seeded_permutations(run_seed(rng), range(max_perms), n, n_steps)

        def ends() -> np.ndarray:
            top = np.zeros((1, n), dtype=np.uint8)
            return game(np.concatenate([top, top + n_steps]))

        def run_chunks(chunks: list[np.ndarray]) -> Iterator[_Walked]:
            for indices in chunks:
                yield _Walked(indices, self.walk(game, orders[indices]))

        run = drive_walks(
            orders,
            self.evaluations_per_permutation(n, n_steps),
            ends,
            run_chunks,
            stopping_point=self.stopping_point,
            checkpoint=self.checkpoint,
            progress=self.progress,
            desc=self.name,
        )
        return {**run.samples, "ladder": np.array(game_ladder(game), dtype=np.int64)}

    def walks(self, samples: dict[str, np.ndarray]) -> Walks:
        """The :class:`Walks` view of :meth:`sample`'s output, non-finite values capped.

        Samples without a ``ladder`` (written before ladders) are two-level walks.

        Raises:
            ValueError: the walks are not this estimator's (another walk length).
        """
        perms, steps = samples["permutations"], samples["walks"]
        endpoints, max_perms = samples["endpoints"], int(samples["max_permutations"])
        ladder = tuple(int(b) for b in samples.get("ladder", (1, 0)))
        n_steps = len(ladder) - 1
        done, length = perms.shape
        n = length // n_steps
        if length != n * n_steps or steps.shape != (
            done,
            self.evaluations_per_permutation(n, n_steps),
        ):
            raise ValueError(
                f"walks of shape {steps.shape} over a ladder of {n_steps} step(s) were not "
                f"sampled by {self.name} ({self.evaluations_per_permutation(n, n_steps)} "
                "values per walk)"
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
        marginals, prefix = self._marginals(perms, steps_c, endpoints_c, n_steps)
        coalitions = (
            np.stack([self.coalitions(p) for p in perms])
            if done
            else np.empty((0, steps.shape[1], n), dtype=bool if n_steps == 1 else np.uint8)
        )
        return Walks(
            kind=self.kind,
            ladder=ladder,
            permutations=perms,
            coalitions=coalitions,
            values=steps_c,
            endpoints=endpoints_c,
            prefix=prefix,
            step_marginals=marginals,
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

    def _max_se(self, perms: np.ndarray, walks: np.ndarray, endpoints: np.ndarray) -> float:
        """The largest standard error of a (player, step) value over these walks."""
        raw, _ = cap_nonfinite(np.concatenate([endpoints, walks.ravel()]))
        length = perms.shape[1]
        n_steps = length // (int(perms.max()) + 1)
        marginals, _ = self._marginals(perms, raw[2:].reshape(walks.shape), raw[:2], n_steps)
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
        n = int(perm.max()) + 1  # every player appears S times in a walk order
        return level_coalitions(perm, n, len(perm) // n)

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

    def check_steps(self, n_steps: int) -> None:
        if n_steps != 1:
            raise ValueError(
                f"SII walks exist for two-level ladders only, not {n_steps + 1} levels: "
                "sample ladder games with spqe.walks: prefix"
            )

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
        ValueError: the walk length is neither kind's (``T - 1`` or ``2(T - 1)`` values
            for walk orders of length ``T``).
    """
    length = samples["permutations"].shape[1]
    steps = samples["walks"].shape[1]
    for cls in WALK_SAMPLERS.values():
        if cls().evaluations_per_permutation(length) == steps:
            return cls().walks(samples)
    raise ValueError(
        f"walks of {steps} values for walk orders of length {length} are neither prefix "
        f"walks ({length - 1} values) nor SII walks ({2 * (length - 1)} values)"
    )
