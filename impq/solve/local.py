"""Budget repair and local-search polish of choice vectors.

Both work on a choice vector (L,) (index into ``problem.precisions`` per block) and use
exact objective deltas: with ``g[i, p] = Σ_j pair[i, p, j, c_j]`` the objective change of
block ``i`` to precision ``p`` is ``cost[i, p] - cost[i, c_i] + g[i, p] - g[i, c_i]``, and
two changes at once add their mixed pair term, so a whole neighbourhood is one vectorised
numpy expression.
"""

from __future__ import annotations

import numpy as np

from impq.solve.problem import BitProblem

__all__ = ["polish", "repair"]


def _pair_matrix(problem: BitProblem) -> np.ndarray:
    """``pair`` as an (L·P, L·P) matrix over (block, precision) moves."""
    n, p = problem.sizes.shape
    return problem.pair.reshape(n * p, n * p)


def _moves(
    problem: BitProblem, choice: np.ndarray, pm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every (block, precision): the index of the block's current move, the objective
    change and the byte change."""
    n, p = problem.sizes.shape
    current = np.arange(n) * p + choice
    g = pm[:, current].sum(axis=1).reshape(n, p)
    rows = np.arange(n)
    d_obj = (problem.cost + g) - (problem.cost + g)[rows, choice][:, None]
    d_bytes = problem.sizes - problem.sizes[rows, choice][:, None]
    return current, d_obj, d_bytes


def repair(problem: BitProblem, choice: np.ndarray) -> np.ndarray:
    """Lower precisions until the choice fits the budget, losing the least per byte saved."""
    choice = np.array(choice, dtype=np.int64)
    pm = _pair_matrix(problem)
    used = int(problem.stored_bytes(choice))
    while used > problem.budget_bytes:
        _, d_obj, d_bytes = _moves(problem, choice, pm)
        saves = d_bytes < 0
        ratio = np.where(saves, d_obj / np.where(saves, -d_bytes, 1), np.inf)
        i, p = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
        choice[i] = p
        used += int(d_bytes[i, p])
    return choice


def polish(problem: BitProblem, choice: np.ndarray, max_moves: int | None = None) -> np.ndarray:
    """Best-improvement local search over single changes and pairs of changes.

    Starting from a feasible choice, repeatedly applies the feasible move (one block to
    another precision, or two blocks at once, e.g. a swap of bits between blocks) that
    lowers the objective most, until none does. Feasibility is kept at every step.
    """
    choice = np.array(choice, dtype=np.int64)
    n, n_prec = problem.sizes.shape
    used = int(problem.stored_bytes(choice))
    if used > problem.budget_bytes:
        raise ValueError("polish needs a feasible starting point; repair it first")
    pm = _pair_matrix(problem)
    block_of = np.repeat(np.arange(n), n_prec)
    prec_of = np.tile(np.arange(n_prec), n)
    same_block = block_of[:, None] == block_of[None, :]
    max_moves = max_moves if max_moves is not None else 4 * n * n_prec
    scale = np.abs(problem.cost).sum() + np.abs(pm).sum()
    tol = 1e-12 * max(scale, 1e-300)
    slack0 = problem.budget_bytes
    for _ in range(max_moves):
        current, d_obj, d_bytes = _moves(problem, choice, pm)
        cur = current[block_of]  # the current move of each move's block
        slack = slack0 - used
        ov, bv = d_obj.ravel(), d_bytes.ravel()
        single = np.where(bv <= slack, ov, np.inf)
        mixed = pm - pm[:, cur] - pm[cur, :] + pm[np.ix_(cur, cur)]
        pair = ov[:, None] + ov[None, :] + mixed
        ok = (bv[:, None] + bv[None, :] <= slack) & ~same_block
        pair = np.where(ok, pair, np.inf)
        best_single = int(np.argmin(single))
        best_pair = int(np.argmin(pair))
        if min(single[best_single], pair.flat[best_pair]) >= -tol:
            break
        if single[best_single] <= pair.flat[best_pair]:
            picks = [best_single]
        else:
            picks = [int(m) for m in np.unravel_index(best_pair, pair.shape)]
        for m in picks:
            choice[block_of[m]] = prec_of[m]
            used += int(bv[m])
    return choice
