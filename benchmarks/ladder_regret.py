"""Allocation regret over a three-level ladder, on random games whose optimum is known.

Each game has L = 12 blocks of equal size on the ladder (4, 3, 2) bits (level 0 = 4 bits,
level 2 = 2 bits) and a loss ``v(x)`` over level vectors ``x`` in NLL-like units:
``v(top) = 3.8``; per block a cost of its first step (4 -> 3 bits, log-normal, median
0.08) and of its second (3 -> 2, median 0.3); pairwise terms ``Q_ij d(x_i) d(x_j)`` with
``Q_ij ~ N(0.02, 0.08)`` and the depth ``d = (0, 0.35, 1)`` of each level, plus a term
``N(0, 0.02)`` per pair of blocks and pair of lowered levels; three-way terms
``N(0.05, 0.10) d(x_i) d(x_j) d(x_k)`` on a random fifth of the triples; and independent
per-configuration noise ``N(0, NOISE = 0.02)``. The exact optimum of each budget comes
from enumerating all 3^12 level vectors of the true game (vectorized).

Every objective method sees the same M = 2L = 24 seeded ladder walks (each block
appears once per step, L * 2 - 1 inner prefixes per walk plus the two endpoints):
``surrogate`` (ridge over per-(block, level) indicators and pairwise products),
``covariance`` (the paper's form generalized step by step, ``impq``) and ``shapley``
(additive: the (block, step) Shapley values). Each objective is minimised exactly (by
enumeration) under each budget, so any regret is the interaction model's, not the
solver's. ``uniform`` is the best uniform that fits (``uniform-fit``). ``seeded`` is the
search seeded by impq (:func:`impq.search.seeded`) from the three objectives' picks with
:data:`OWN_EVALUATIONS` evaluations of its own; ``evopress`` (:func:`impq.search.evopress`)
gets the same total: the walks' evaluations plus the seeded search's. Both evaluate the
true game (no held-back game: the search's best is its pick). Regret = true value of a
method's assignment minus the true optimum, in loss units, averaged over the games and
the budgets 2.5, 3.0 and 3.5 bits.

    PYTHONPATH=. python benchmarks/ladder_regret.py [--games 50] [--seed 0]

The last line reads
``ladder regret surrogate: X covariance: X shapley: X evopress: X seeded: X uniform: X``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from impq.baselines import get_baseline
from impq.baselines.base import budget_problem as budget_only
from impq.config import SpqeConfig
from impq.estimate import WALK_SAMPLERS, Walks, get_objective, walks_from_samples
from impq.estimate.objectives import AdditiveObjective, Objective
from impq.game import Game
from impq.search import evopress, seeded
from impq.search.coalition import choice_of, levels_of
from impq.solve import BitProblem

N_BLOCKS = 12
LADDER = (4, 3, 2)
N_LEVELS = len(LADDER)
BUDGETS = (2.5, 3.0, 3.5)
BLOCK_PARAMS = 1 << 16
NOISE = 0.02
DEPTH = np.array([0.0, 0.35, 1.0])
"""How far each level is from the top, for the interaction terms."""
OWN_EVALUATIONS_PER_WALK_EVALUATION = 1.0
"""The seeded search's own budget as a share of the walks' evaluations."""


def all_levels(n: int = N_BLOCKS) -> np.ndarray:
    """(3^n, n) every level vector; row ``c`` is the vector whose code (base 3, block 0
    least significant) is ``c``."""
    codes = np.arange(N_LEVELS**n)
    return ((codes[:, None] // N_LEVELS ** np.arange(n)) % N_LEVELS).astype(np.uint8)


class LevelTableGame(Game):
    """A game over :data:`LADDER` given by its value on every level vector (by code)."""

    ladder = LADDER

    def __init__(self, table: np.ndarray, n_players: int) -> None:
        super().__init__(n_players, N_LEVELS)
        self.table = table
        self.codes = N_LEVELS ** np.arange(n_players)

    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        return self.table[np.asarray(coalitions, dtype=np.int64) @ self.codes]


def on_grid(n: int, blocks: tuple[int, ...], table: np.ndarray) -> np.ndarray:
    """``table`` (one axis of N_LEVELS per block of ``blocks``) shaped to broadcast over
    the grid of every level vector: axis ``n - 1 - i`` is block ``i``, so the grid's
    C-order flat index is the code of :func:`all_levels`."""
    axes = [n - 1 - b for b in blocks]
    shape = [1] * n
    for a in axes:
        shape[a] = N_LEVELS
    return np.transpose(table, np.argsort(axes)).reshape(shape)


def random_game(seed: int, n: int = N_BLOCKS) -> LevelTableGame:
    """The game of the module docstring, the same for the same seed (summed on the grid
    of every level vector by broadcasting, one term at a time)."""
    rng = np.random.default_rng([seed, N_LEVELS])
    steps = np.exp(rng.normal(np.log([0.08, 0.3]), 0.6, (n, 2)))
    cost = np.concatenate([np.zeros((n, 1)), np.cumsum(steps, axis=1)], axis=1)
    v = np.full((N_LEVELS,) * n, 3.8)
    for i in range(n):
        v += on_grid(n, (i,), cost[i])
    for i, j in combinations(range(n), 2):
        pair = rng.normal(0.02, 0.08) * np.outer(DEPTH, DEPTH)
        pair[1:, 1:] += rng.normal(0.0, 0.02, (N_LEVELS - 1, N_LEVELS - 1))
        v += on_grid(n, (i, j), pair)
    for i, j, k in combinations(range(n), 3):
        if rng.random() < 0.2:
            triple = np.einsum("a,b,c->abc", DEPTH, DEPTH, DEPTH)
            v += on_grid(n, (i, j, k), rng.normal(0.05, 0.10) * triple)
    flat = v.ravel()
    flat += rng.normal(0.0, NOISE, flat.size)
    return LevelTableGame(flat, n)


def budget_problem(budget: float, n: int = N_BLOCKS) -> BitProblem:
    """The byte budget alone (zero objective), for the true optimum and the searches."""
    return budget_only([BLOCK_PARAMS] * n, budget, LADDER)


def walk_evaluations(n: int, permutations: int) -> int:
    """What ``permutations`` ladder walks over ``n`` blocks cost: two endpoints and every
    inner prefix."""
    return 2 + permutations * (n * (N_LEVELS - 1) - 1)


@dataclass
class Case:
    """One game: its true table, the walks every objective shares, the evaluation counts,
    and the picks of the methods run so far (by method and budget)."""

    game: LevelTableGame
    seed: int
    levels: np.ndarray
    feasible: dict[float, np.ndarray]
    picks: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    _walks: Walks | None = None
    _predicted: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_blocks(self) -> int:
        """Blocks of the game."""
        return self.game.n_players

    @property
    def permutations(self) -> int:
        """M = 2L walks."""
        return 2 * self.n_blocks

    @property
    def walk_evaluations(self) -> int:
        """What the walks cost."""
        return walk_evaluations(self.n_blocks, self.permutations)

    @property
    def own_evaluations(self) -> int:
        """The seeded search's own evaluation budget."""
        return round(OWN_EVALUATIONS_PER_WALK_EVALUATION * self.walk_evaluations)

    def fresh_game(self) -> LevelTableGame:
        """The true game with its own evaluation counter."""
        return LevelTableGame(self.game.table, self.game.n_players)

    def walks(self) -> Walks:
        """The M seeded prefix walks over the ladder (sampled once)."""
        if self._walks is None:
            sampler = WALK_SAMPLERS["prefix"]()
            samples = sampler.sample(self.fresh_game(), self.walk_evaluations, self.seed)
            self._walks = walks_from_samples(samples)
        return self._walks

    def predicted(self, name: str) -> np.ndarray:
        """Objective ``name``'s prediction on every level vector (fitted once)."""
        if name not in self._predicted:
            fit = OBJECTIVES[name].build(self.walks(), SpqeConfig(ladder=list(LADDER)))
            objective = fit.objective
            self._predicted[name] = predicted(objective.cost, objective.pair)
        return self._predicted[name]


Method = Callable[[Case, BitProblem], np.ndarray]
"""``(case, problem) -> choice`` (an index into ``problem.precisions`` per block)."""


def predicted(cost: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """A level objective's prediction ``sum_i cost[i, x_i] + sum_{i<j} pair[i, x_i, j, x_j]``
    on every level vector, indexed by code (as :func:`random_game`'s table)."""
    n = cost.shape[0]
    f = np.zeros((N_LEVELS,) * n)
    for i in range(n):
        f += on_grid(n, (i,), cost[i])
    for i, j in combinations(range(n), 2):
        f += on_grid(n, (i, j), pair[i, :, j, :])
    return f.ravel()


def objective_method(name: str) -> Method:
    """Objective ``name`` from the walks, minimised exactly under the budget."""

    def choose(case: Case, problem: BitProblem) -> np.ndarray:
        fits = case.feasible[float(problem.budget_bits or 0)]
        f = np.where(fits, case.predicted(name), np.inf)
        return choice_of(problem, case.levels[int(np.argmin(f))])

    return choose


def uniform_fit(case: Case, problem: BitProblem) -> np.ndarray:
    """The best uniform that fits (``uniform-fit``)."""
    return problem.choice(get_baseline("uniform-fit").assign(np.zeros(case.n_blocks), problem))


def evopress_search(case: Case, problem: BitProblem) -> np.ndarray:
    """EvoPress on the true game with the walks' and the seeded search's evaluations."""
    total = case.walk_evaluations + case.own_evaluations
    found = evopress(case.fresh_game(), problem, total, seed=case.seed, ladder=LADDER)
    return found.choice


SEED_METHODS = ("surrogate", "covariance", "shapley")
"""The objectives whose picks start the seeded search."""


def seeded_search(case: Case, problem: BitProblem) -> np.ndarray:
    """The search seeded by the objectives' picks, with its own evaluations."""
    starts = {
        name: levels_of(problem, case.picks[name, float(problem.budget_bits or 0)], LADDER)
        for name in SEED_METHODS
    }
    found = seeded(
        case.fresh_game(), problem, starts, case.own_evaluations, seed=case.seed, ladder=LADDER
    )
    return found.choice


OBJECTIVES: dict[str, Objective] = {
    "surrogate": get_objective("surrogate"),
    "covariance": get_objective("impq"),
    "shapley": AdditiveObjective(),
}
"""The interaction models compared, as the pipeline builds them (``covariance`` is the
pipeline's ``impq``)."""

METHODS: dict[str, Method | None] = {
    "surrogate": objective_method("surrogate"),
    "covariance": objective_method("covariance"),
    "shapley": objective_method("shapley"),
    "evopress": evopress_search,
    "seeded": seeded_search,
    "uniform": uniform_fit,
}
"""Method name -> how it chooses an assignment, in the order of the last line."""


def main() -> None:
    """Run every method on every game and budget; print the table and the last line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--games", type=int, default=50, help="random games")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--blocks", type=int, default=N_BLOCKS, help="L (12; fewer for a test)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    n = args.blocks
    levels = all_levels(n)
    problems = {b: budget_problem(b, n) for b in BUDGETS}
    choices = choice_of(problems[BUDGETS[0]], levels)
    feasible = {b: problems[b].stored_bytes(choices) <= problems[b].budget_bytes for b in BUDGETS}
    codes = N_LEVELS ** np.arange(n)

    regret: dict[str, dict[float, list[float]]] = {m: {b: [] for b in BUDGETS} for m in METHODS}
    for g in range(args.games):
        seed = args.seed + g
        case = Case(random_game(seed, n), seed, levels, feasible)
        v = case.game.table
        for b in BUDGETS:
            best = float(v[feasible[b]].min())
            for name, method in METHODS.items():
                if method is None:
                    continue
                choice = method(case, problems[b])
                case.picks[name, b] = choice
                if not problems[b].feasible(choice):
                    raise RuntimeError(f"{name} returned an assignment over the budget")
                level = levels_of(problems[b], choice).astype(np.int64)
                regret[name][b].append(float(v[level @ codes]) - best)

    walks = walk_evaluations(n, 2 * n)
    print(
        f"L = {n}, ladder {list(LADDER)}, M = {2 * n} walks ({walks} evaluations), "
        f"{args.games} games, budgets {list(BUDGETS)}; regret = v(method) - v(optimum), "
        "loss units; hit = share of cases at the optimum"
    )
    searches = walks + round(OWN_EVALUATIONS_PER_WALK_EVALUATION * walks)
    evals = {"evopress": searches, "seeded": searches, "uniform": 0}
    heads = " ".join(f"{f'@{b}':>9}" for b in BUDGETS)
    print(f"{'method':>10} {'evals':>6} {heads} {'mean':>8} {'hit':>5}")
    means: dict[str, float] = {}
    for name in METHODS:
        cells = [regret[name][b] for b in BUDGETS]
        flat = [r for c in cells for r in c]
        means[name] = float(np.mean(flat)) if flat else float("nan")
        hit = float(np.mean(np.array(flat) < 1e-12)) if flat else float("nan")
        row = " ".join(f"{np.mean(c) if c else np.nan:>9.4f}" for c in cells)
        n_evals = evals.get(name, walks)
        print(f"{name:>10} {n_evals:>6} {row} {means[name]:>8.4f} {hit:>5.2f}")
    print(f"seconds: {time.perf_counter() - t0:.1f}")
    print("ladder regret " + " ".join(f"{name}: {means[name]:.6f}" for name in METHODS))


if __name__ == "__main__":
    main()
