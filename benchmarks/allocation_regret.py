"""Allocation regret on random games whose optimum under the budget is known exactly.

Each game has L = 12 blocks of equal size and a loss ``v(S)`` (``S`` the blocks at 2 bits)
in NLL-like units: ``v(∅) = 3.8``, positive log-normal main effects ``b_i`` (mean about
0.35), pairwise terms ``Q_ij ~ N(0.02, 0.08)`` and independent per-coalition noise
``N(0, NOISE = 0.02)`` (family ``pairwise``); family ``third-order`` adds three-way terms
``N(0.05, 0.10)`` on a random fifth of the triples. The exact optimum of each budget
comes from enumerating all 2^12 assignments of the true game.

Every method sees the same M = 2L = 24 seeded permutations (permutation ``k`` derives
from the game's seed and ``k``): ``paper`` (the paper's covariance form, ``impq``),
``surrogate`` (ridge quadratic) and ``shapley`` (Shapley values ranked greedily, the
``shapley`` baseline) from the prefix walks, 2 + M(L-1) = 266 evaluations; ``sii`` (the
SII form) from SII walks of the same permutations, 2 + 2M(L-1) = 530 evaluations. The
objective methods are solved exactly (enumeration) under each budget, so any regret is
the interaction model's, not the solver's. Regret = true value of the method's
assignment minus the true optimum, in loss units, averaged over 50 games per family
and the budgets 2.5, 3.0 and 3.5 bits.

A method is one entry of :data:`METHODS`: a function ``(Case, BitProblem) -> choice``
(``choice`` indexes ``problem.precisions`` per block). ``evopress`` (the search of
:mod:`impq.search.evopress`) gets ``case.fresh_game()`` and ``case.evaluations`` (what the
prefix walks cost) evaluations of the true game, as SPQE does.

    PYTHONPATH=. python benchmarks/allocation_regret.py [--games 50] [--seed 0]

The last line reads ``regret paper: X sii: X surrogate: X shapley: X evopress: X``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import combinations

import numpy as np

from impq.baselines import BaselineInputs, get_baseline
from impq.config import SpqeConfig
from impq.estimate import (
    WALK_SAMPLERS,
    LevelObjective,
    Walks,
    all_coalitions,
    get_objective,
    walks_from_samples,
)
from impq.game import TableGame
from impq.search.coalition import choice_of
from impq.search.evopress import evopress
from impq.solve import BitProblem, get_solver

N_BLOCKS = 12
PERMUTATIONS = 2 * N_BLOCKS
BUDGETS = (2.5, 3.0, 3.5)
FAMILIES = ("pairwise", "third-order")
BLOCK_PARAMS = 1 << 16
NOISE = 0.02


def random_game(family: str, seed: int) -> TableGame:
    """A game of :data:`FAMILIES` (see the module docstring), the same for the same seed."""
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    n = N_BLOCKS
    s = all_coalitions(n)
    x = s.astype(np.float64)
    b = np.exp(rng.normal(np.log(0.3), 0.6, n))
    q = np.triu(rng.normal(0.02, 0.08, (n, n)), 1)
    v = 3.8 + x @ b + np.einsum("ci,ij,cj->c", x, q, x)
    if family == "third-order":
        for i, j, k in combinations(range(n), 3):
            if rng.random() < 0.2:
                v += rng.normal(0.05, 0.10) * (x[:, i] * x[:, j] * x[:, k])
    v += rng.normal(0.0, NOISE, len(v))
    table = np.empty(2**n)
    table[s.astype(np.int64) @ (1 << np.arange(n))] = v
    return TableGame(table)


@dataclass
class Case:
    """One game: its true table, the walks every SPQE method shares, the evaluation count."""

    game: TableGame
    seed: int
    permutations: int = PERMUTATIONS
    _walks: dict[str, Walks] = field(default_factory=dict)
    _objectives: dict[tuple[str, str], LevelObjective] = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        """What SPQE's prefix walks cost: the evaluation budget of a search baseline."""
        return WALK_SAMPLERS["prefix"]().budget_for(self.game.n_players, self.permutations)

    def fresh_game(self) -> TableGame:
        """The true game with its own evaluation counter."""
        return TableGame(self.game.table)

    def walks(self, kind: str) -> Walks:
        """The walks of ``kind`` on this game's seeded permutations (sampled once)."""
        if kind not in self._walks:
            sampler = WALK_SAMPLERS[kind]()
            budget = sampler.budget_for(self.game.n_players, self.permutations)
            samples = sampler.sample(self.fresh_game(), budget, self.seed)
            self._walks[kind] = walks_from_samples(samples)
        return self._walks[kind]

    def objective(self, name: str, kind: str) -> LevelObjective:
        """The pipeline's objective ``name`` from ``kind`` walks, default options (once),
        its levels read as 4 and 2 bits."""
        if (name, kind) not in self._objectives:
            fit = get_objective(name).build(self.walks(kind), SpqeConfig())
            result = fit.to_objective(np.full(N_BLOCKS, BLOCK_PARAMS))
            self._objectives[name, kind] = replace(result, ladder=(4, 2))
        return self._objectives[name, kind]


Method = Callable[[Case, BitProblem], np.ndarray]


def objective_method(name: str, kind: str) -> Method:
    """The pipeline's objective ``name`` built from ``kind`` walks, solved exactly."""

    def choose(case: Case, problem: BitProblem) -> np.ndarray:
        solved = BitProblem.from_objective(
            case.objective(name, kind), float(problem.budget_bits or 0),
            precisions=problem.precisions, group_size=problem.group_size,
        )  # fmt: skip
        return get_solver("exact").solve(solved).choice

    return choose


def shapley_greedy(case: Case, problem: BitProblem) -> np.ndarray:
    """The ``shapley`` baseline: prefix-walk Shapley values ranked by the greedy rule."""
    walks = case.walks("prefix")
    result = WALK_SAMPLERS["prefix"]().assemble_walks(walks).to_result()
    baseline = get_baseline("shapley")
    scores = baseline.scores(BaselineInputs(shapley=result), N_BLOCKS)
    return problem.choice(baseline.assign(scores, problem))


def evopress_search(case: Case, problem: BitProblem) -> np.ndarray:
    """EvoPress on the true game with the evaluations SPQE's prefix walks cost."""
    found = evopress(case.fresh_game(), problem, case.evaluations, seed=case.seed)
    return choice_of(problem, found.coalition)


METHODS: dict[str, Method | None] = {
    "paper": objective_method("impq", "prefix"),
    "sii": objective_method("sii", "sii"),
    "surrogate": objective_method("surrogate", "prefix"),
    "shapley": shapley_greedy,
    "evopress": evopress_search,
}
"""Method name -> how it chooses an assignment; adding a method is one entry here."""


def budget_problem(budget: float) -> BitProblem:
    """The byte budget alone (zero objective), for the true optimum and the methods."""
    n = N_BLOCKS
    return BitProblem.build(np.zeros(n), np.zeros((n, n)), [BLOCK_PARAMS] * n, budget)


def main() -> None:
    """Run every method on every game and budget; print the table and the last line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--games", type=int, default=50, help="games per family")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()

    every = all_coalitions(N_BLOCKS)
    masks = every.astype(np.int64) @ (1 << np.arange(N_BLOCKS))
    choices = (~every).astype(np.int64)  # choice 0 = 2 bits = in S
    problems = {b: budget_problem(b) for b in BUDGETS}
    feasible = {b: problems[b].stored_bytes(choices) <= problems[b].budget_bytes for b in BUDGETS}
    bits = 1 << np.arange(N_BLOCKS)

    regret: dict[str, dict[tuple[str, float], list[float]]] = {m: {} for m in METHODS}
    for family in FAMILIES:
        for g in range(args.games):
            seed = args.seed + g
            case = Case(random_game(family, seed), seed)
            v = case.game.table
            for b in BUDGETS:
                best = float(v[masks[feasible[b]]].min())
                for name, method in METHODS.items():
                    cell = regret[name].setdefault((family, b), [])
                    if method is None:
                        continue
                    choice = method(case, problems[b])
                    if not problems[b].feasible(choice):
                        raise RuntimeError(f"{name} returned an assignment over the budget")
                    cell.append(float(v[(choice == 0).astype(np.int64) @ bits]) - best)

    evals = {
        "paper": case.evaluations,
        "surrogate": case.evaluations,
        "shapley": case.evaluations,
        "sii": WALK_SAMPLERS["sii"]().budget_for(N_BLOCKS, PERMUTATIONS),
    }
    print(
        f"L = {N_BLOCKS}, M = {PERMUTATIONS} permutations, {args.games} games per family, "
        f"budgets {list(BUDGETS)}; regret = v(method) - v(optimum), loss units; "
        "hit = share of cases at the optimum"
    )
    heads = " ".join(f"{f'{f[:5]}@{b}':>10}" for f in FAMILIES for b in BUDGETS)
    print(f"{'method':>10} {'evals':>6} {heads} {'mean':>8} {'hit':>5}")
    means: dict[str, float] = {}
    for name in METHODS:
        cells = [regret[name][(f, b)] for f in FAMILIES for b in BUDGETS]
        flat = [r for c in cells for r in c]
        means[name] = float(np.mean(flat)) if flat else float("nan")
        hit = float(np.mean(np.array(flat) < 1e-12)) if flat else float("nan")
        row = " ".join(f"{np.mean(c) if c else np.nan:>10.4f}" for c in cells)
        print(f"{name:>10} {evals.get(name, case.evaluations):>6} {row} {means[name]:>8.4f} {hit:>5.2f}")  # fmt: skip
    for name, method in METHODS.items():
        if method is None:
            print(f"{name}: not implemented yet (METHODS[{name!r}] is None): nan")
    print(f"seconds: {time.perf_counter() - t0:.1f}")
    print("regret " + " ".join(f"{name}: {means[name]:.6f}" for name in METHODS))


if __name__ == "__main__":
    main()
