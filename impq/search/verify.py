"""The verified final pick: candidate assignments scored on held-back data, the lowest kept.

The objective of the bit-assignment program is a model of the loss, fitted to SPQE's
walks; its optimum is a prediction. The verified pick checks that prediction against a
measurement: the candidates are the assignments of every method at one budget, followed
by each one's best one-swap neighbour under the objective (one block a precision step up,
another a step down, within the budget; with two precisions: one low block raised, one
high block lowered), and each is evaluated, in that order, on a game
over data the objective was not fitted to (calibration sequences SPQE did not use),
until the evaluation budget is spent. The objective's own choice comes first, so the
pick is never worse than it on that data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from impq.game.base import Game
from impq.search.coalition import choice_of, levels_of
from impq.solve.problem import BitProblem

__all__ = ["Candidate", "VerifiedPick", "best_swap", "candidates", "verified_pick"]


@dataclass(frozen=True)
class Candidate:
    """One assignment to verify.

    Attributes:
        name: where it came from: a method, or ``<method>+swap`` for its best neighbour.
        coalition: (L,) its level vector, as the game scores it (two precisions:
            ``True`` = block at low bits).
    """

    name: str
    coalition: np.ndarray


@dataclass(frozen=True)
class VerifiedPick:
    """The outcome of :func:`verified_pick`.

    Attributes:
        pick: the candidate of lowest measured value.
        value: its measured value.
        reference: the objective's choice (the first candidate).
        reference_value: its measured value (never below ``value``).
        values: measured value of every evaluated candidate, by name, in order.
        evaluations: game evaluations spent.
        skipped: candidates left unevaluated for lack of budget.
    """

    pick: Candidate
    value: float
    reference: Candidate
    reference_value: float
    values: dict[str, float] = field(default_factory=dict)
    evaluations: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        """Whether the pick is another assignment than the objective's choice."""
        return not np.array_equal(self.pick.coalition, self.reference.coalition)


def best_swap(
    problem: BitProblem, coalition: np.ndarray, ladder: Sequence[int] | None = None
) -> np.ndarray | None:
    """The feasible neighbour of lowest objective, or None when none fits the budget.

    A neighbour moves one block a precision step up (to the next of
    ``problem.precisions``) and another block a step down; ``coalition`` and the result
    are level vectors of ``ladder`` (see :mod:`impq.search.coalition`).
    """
    choice = choice_of(problem, coalition, ladder)
    top = len(problem.precisions) - 1
    ups, downs = np.flatnonzero(choice < top), np.flatnonzero(choice > 0)
    up, down = (a.ravel() for a in np.meshgrid(ups, downs, indexing="ij"))
    up, down = up[up != down], down[up != down]
    if not up.size:
        return None
    neighbours = np.repeat(choice[None, :], len(up), axis=0)
    rows = np.arange(len(up))
    neighbours[rows, up] += 1
    neighbours[rows, down] -= 1
    feasible = np.asarray(problem.stored_bytes(neighbours)) <= problem.budget_bytes
    if not feasible.any():
        return None
    objective = np.where(feasible, problem.objective(neighbours), np.inf)
    return levels_of(problem, neighbours[int(np.argmin(objective))], ladder)


def candidates(
    problem: BitProblem,
    assignments: Mapping[str, np.ndarray],
    reference: str,
    ladder: Sequence[int] | None = None,
) -> list[Candidate]:
    """The candidates in the order they are verified.

    ``assignments`` are level vectors of ``ladder`` (None: the problem's precisions,
    descending; see :mod:`impq.search.coalition`).

    ``reference`` (the objective's choice) first, then the other methods in the order
    given, then every method's best one-swap neighbour, lowest objective first. A
    coalition met twice keeps its first name.

    Raises:
        ValueError: ``reference`` is not among ``assignments``, or an assignment is over
            the budget.
    """
    if reference not in assignments:
        raise ValueError(f"the objective's choice {reference!r} is not among {list(assignments)}")
    names = [reference, *(m for m in assignments if m != reference)]
    for name in names:
        used = int(problem.stored_bytes(choice_of(problem, assignments[name], ladder)))
        if used > problem.budget_bytes:
            raise ValueError(
                f"{name}'s assignment takes {used} bytes, over the budget of {problem.budget_bytes}"
            )
    methods = [
        Candidate(n, levels_of(problem, choice_of(problem, assignments[n], ladder), ladder))
        for n in names
    ]
    swaps = []
    for c in methods:
        neighbour = best_swap(problem, c.coalition, ladder)
        if neighbour is not None:
            swaps.append(Candidate(f"{c.name}+swap", neighbour))
    swaps.sort(key=lambda c: float(problem.objective(choice_of(problem, c.coalition, ladder))))
    out: list[Candidate] = []
    seen: set[bytes] = set()
    for c in [*methods, *swaps]:
        if c.coalition.tobytes() not in seen:
            seen.add(c.coalition.tobytes())
            out.append(c)
    return out


def verified_pick(
    game: Game, candidates: Sequence[Candidate], max_evaluations: int
) -> VerifiedPick:
    """Evaluate the first ``max_evaluations`` candidates on ``game``; keep the lowest.

    Ties go to the earlier candidate, so the first one (the objective's choice) is kept
    unless another measures strictly lower; a non-finite value never wins.

    Raises:
        ValueError: no candidate, or a budget below one evaluation.
    """
    if not candidates:
        raise ValueError("the verified pick needs at least one candidate")
    if max_evaluations < 1:
        raise ValueError(f"max_evaluations must be at least 1, got {max_evaluations}")
    chosen, skipped = list(candidates[:max_evaluations]), list(candidates[max_evaluations:])
    values = game(np.array([c.coalition for c in chosen]))
    # the first of equal minima; a NaN or infinite value never wins
    best = int(np.argmin(np.where(np.isfinite(values), values, np.inf)))
    return VerifiedPick(
        pick=chosen[best],
        value=float(values[best]),
        reference=chosen[0],
        reference_value=float(values[0]),
        values={c.name: float(v) for c, v in zip(chosen, values, strict=True)},
        evaluations=len(chosen),
        skipped=[c.name for c in skipped],
    )
