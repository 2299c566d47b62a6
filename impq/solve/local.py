"""Budget repair and local-search polish of choice vectors.

Both work on a choice vector (L,) (index into ``problem.precisions`` per block) and use
exact objective deltas: changing block ``i`` alone, or two blocks at once, costs O(1)
given ``g = K q``, so a whole neighbourhood is one vectorised numpy expression.
"""

from __future__ import annotations

import numpy as np

from impq.solve.problem import BitProblem

__all__ = ["polish", "repair"]


def _moves(problem: BitProblem, choice: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every (block, precision): the level change, the objective change, the byte change."""
    n = problem.n_blocks
    k = problem.interactions
    diag = np.diag(k)
    q = problem.levels[choice]
    rest = k @ q - diag * q
    delta = problem.levels[None, :] - q[:, None]
    new = q[:, None] + delta
    d_obj = (
        problem.linear[:, None] * delta
        + diag[:, None] * (new**2 - (q**2)[:, None])
        + 2 * delta * rest[:, None]
    )
    d_bytes = problem.sizes - problem.sizes[np.arange(n), choice][:, None]
    return delta, d_obj, d_bytes


def repair(problem: BitProblem, choice: np.ndarray) -> np.ndarray:
    """Lower precisions until the choice fits the budget, losing the least per byte saved."""
    choice = np.array(choice, dtype=np.int64)
    used = int(problem.stored_bytes(choice))
    while used > problem.budget_bytes:
        _, d_obj, d_bytes = _moves(problem, choice)
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
    k = problem.interactions
    block_of = np.repeat(np.arange(n), n_prec)
    prec_of = np.tile(np.arange(n_prec), n)
    same_block = block_of[:, None] == block_of[None, :]
    k_pairs = k[block_of][:, block_of]
    max_moves = max_moves if max_moves is not None else 4 * n * n_prec
    scale = np.abs(problem.linear).sum() + np.abs(k).sum()
    tol = 1e-12 * max(scale, 1e-300)
    slack0 = problem.budget_bytes
    for _ in range(max_moves):
        delta, d_obj, d_bytes = _moves(problem, choice)
        slack = slack0 - used
        dv, ov, bv = delta.ravel(), d_obj.ravel(), d_bytes.ravel()
        single = np.where(bv <= slack, ov, np.inf)
        pair = ov[:, None] + ov[None, :] + 2 * k_pairs * np.outer(dv, dv)
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
