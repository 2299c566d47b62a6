"""Choice vectors of a :class:`~impq.solve.problem.BitProblem` as the game's level vectors.

A choice vector indexes ``problem.precisions`` (ascending) per block; a game scores level
vectors, level ``k`` meaning precision ``ladder[k]`` of the game's ladder (descending,
level 0 = the top). This module is the one place where one becomes the other: level of
block ``i`` = ``ladder.index(precisions[choice_i])``. Unless a ladder is given, it is the
ladder of the problem's objective (``problem.source.ladder``), so a two-precision
problem's levels are today's boolean coalitions (``True`` = the block at the lower
precision).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from impq.solve.problem import BitProblem

__all__ = ["choice_of", "coalition_of", "level_table", "levels_of"]


def level_table(problem: BitProblem, ladder: Sequence[int] | None = None) -> np.ndarray:
    """(P,) the ladder level of each of ``problem``'s precisions.

    Raises:
        ValueError: a precision of the problem is not on the ladder (the game cannot
            score it), or the ladder is not strictly descending.
    """
    ladder = _ladder(problem, ladder)
    if any(b <= a for a, b in zip(ladder[1:], ladder, strict=False)) or len(ladder) < 2:
        raise ValueError(f"a ladder is >= 2 strictly descending precisions, got {list(ladder)}")
    if missing := [p for p in problem.precisions if p not in ladder]:
        raise ValueError(
            f"precisions {missing} of the problem are not on the game's ladder {list(ladder)}: "
            "a search can only score measured levels (set solver.precisions to ladder entries)"
        )
    return np.array([ladder.index(p) for p in problem.precisions], dtype=np.int64)


def _ladder(problem: BitProblem, ladder: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(int(b) for b in (problem.source.ladder if ladder is None else ladder))


def _dtype(ladder: Sequence[int] | None, problem: BitProblem) -> type:
    return bool if len(_ladder(problem, ladder)) == 2 else np.uint8


def levels_of(
    problem: BitProblem, choices: np.ndarray, ladder: Sequence[int] | None = None
) -> np.ndarray:
    """Level vector(s) of choice vector(s) (bool for a two-level ladder, else uint8)."""
    table = level_table(problem, ladder)
    return table[np.asarray(choices, dtype=np.int64)].astype(_dtype(ladder, problem))


def choice_of(
    problem: BitProblem, levels: np.ndarray, ladder: Sequence[int] | None = None
) -> np.ndarray:
    """Choice vector(s) of ``problem`` of level vector(s) (boolean coalitions included).

    Raises:
        ValueError: a level is not one of the problem's precisions.
    """
    table = level_table(problem, ladder)
    levels = np.asarray(levels).astype(np.int64)
    inverse = np.full(max(int(table.max()), int(levels.max(initial=0))) + 1, -1, dtype=np.int64)
    inverse[table] = np.arange(len(table))
    if levels.size and (levels.min() < 0 or (inverse[levels] < 0).any()):
        bad = sorted({int(v) for v in levels.ravel() if v < 0 or inverse[v] < 0})
        raise ValueError(f"levels {bad} are not among the problem's precisions' levels {table}")
    return inverse[levels]


def coalition_of(
    problem: BitProblem, bits: dict[int, int], ladder: Sequence[int] | None = None
) -> np.ndarray:
    """The level vector of an assignment ``{block: bits}``."""
    return levels_of(problem, problem.choice(bits), ladder)
