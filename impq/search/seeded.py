"""The search seeded by impq: EvoPress's level-step search started from impq's candidates.

The walks know the game's global structure; EvoPress searches at the budget's own size
and beat every impq objective at equal evaluations. This search takes both: its first
population is impq's candidates (every objective's pick and the verified pick, given as
``starts``) instead of random points, and from there it is :func:`impq.search.evopress`
itself (the same level-step mutations, staged selection on calibration loss with
EvoPress's growing token schedule, elitism, checkpoints), with an evaluation budget of
its own. The final pick is made on data the search did not select on: the ``final``
points of lowest calibration loss (the search's parent first) are scored on a
held-back game by :func:`impq.search.verify.verified_pick`, and the lowest is kept (the
parent unless another measures strictly lower). Those evaluations come out of the same
budget. Without a held-back game the parent is the pick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from impq.game.base import Game
from impq.search.coalition import choice_of, levels_of
from impq.search.evopress import EvoPressResult, SearchState, Stage, evopress
from impq.search.verify import Candidate, VerifiedPick, verified_pick
from impq.solve.problem import BitProblem

__all__ = ["SeededResult", "seeded"]

METHOD = "seeded"


@dataclass(frozen=True)
class SeededResult:
    """The seeded search's pick and what it cost.

    Attributes:
        choice: (L,) the pick, an index into the problem's precisions per block.
        coalition: (L,) its level vector, as the game scores it.
        search: the evolutionary search (its parent is the best on calibration loss).
        final: the held-back scoring of the best points (None without a held-back game).
        evaluations: game evaluations spent, the search's and the final pick's together.
        started_from: the name of the start the first selection kept (None on resume).
    """

    choice: np.ndarray
    coalition: np.ndarray
    search: EvoPressResult
    final: VerifiedPick | None
    evaluations: int
    started_from: str | None


def seeded(
    stages: Sequence[Stage] | Game,
    problem: BitProblem,
    starts: Mapping[str, np.ndarray],
    max_evaluations: int,
    *,
    held_back: Game | None = None,
    final: int = 4,
    offspring: int = 16,
    seed: int | Sequence[int] | np.random.Generator = 0,
    resume: SearchState | None = None,
    on_generation: Callable[[SearchState], None] | None = None,
    ladder: Sequence[int] | None = None,
) -> SeededResult:
    """Search from ``starts``; pick on ``held_back``.

    Args:
        stages: the selection stages (see :func:`impq.search.evopress`).
        problem: blocks' sizes, precisions and the byte budget.
        starts: impq's candidates by name, as level vectors of ``ladder`` (every
            objective's pick and the verified pick); duplicates are scored once.
        max_evaluations: the search's own evaluation budget, the final pick's included.
        held_back: the game of the final pick (data the stages did not select on).
        final: points of lowest calibration loss scored on ``held_back``.
        offspring: mutants per generation.
        seed: seed (or generator) of every random choice of the search.
        resume: a state an earlier call handed to ``on_generation``.
        on_generation: called with the search's state after the first selection and
            after every generation (to checkpoint it).
        ladder: the games' ladder (descending precisions); None: the problem's
            precisions, descending.

    Raises:
        ValueError: no start, a start over the budget, ``final`` negative, or a budget
            that does not pay for the final pick and one selection.
    """
    if not starts:
        raise ValueError("the seeded search needs at least one start (impq's candidates)")
    if final < 0:
        raise ValueError(f"final must be >= 0, got {final}")
    final = final if held_back is not None else 0
    names = list(starts)
    choices = [choice_of(problem, starts[n], ladder) for n in names]
    first: list[SearchState] = []

    def record(state: SearchState) -> None:
        if not first:
            first.append(state)
        if on_generation is not None:
            on_generation(state)

    if max_evaluations - final < 1:
        raise ValueError(
            f"{max_evaluations} evaluations do not pay for a final pick of {final} and a search"
        )
    result = evopress(
        stages,
        problem,
        max_evaluations - final,
        offspring=offspring,
        seed=seed,
        resume=resume,
        on_generation=record,
        starts=choices,
        ladder=ladder,
    )
    started_from = None
    if resume is None and first:
        kept = first[0].parent
        started_from = next(
            n for n, c in zip(names, choices, strict=True) if np.array_equal(c, kept)
        )
    pick, checked = result.choice, None
    if held_back is not None and final > 0:
        others = [c for c in result.known if not np.array_equal(c, result.choice)]
        best = [
            Candidate(METHOD if k == 0 else f"{METHOD}#{k + 1}", levels_of(problem, c, ladder))
            for k, c in enumerate([result.choice, *others][:final])
        ]
        checked = verified_pick(held_back, best, final)
        pick = choice_of(problem, checked.pick.coalition, ladder)
    return SeededResult(
        choice=pick,
        coalition=levels_of(problem, pick, ladder),
        search=result,
        final=checked,
        evaluations=result.evaluations + (checked.evaluations if checked else 0),
        started_from=started_from,
    )
