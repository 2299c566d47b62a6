"""EvoPress (Sieberling et al., ICML 2025) for per-block bits: evolution on the game itself.

A search point is a choice vector of a :class:`~impq.solve.problem.BitProblem` (block
``i`` at ``precisions[choice_i]``) that fits its byte budget; the game scores it as the
level vector of :func:`impq.search.coalition.levels_of` (for two precisions today's
coalition, ``True`` = the block at low bits). A *step* moves one block to the next
precision up or down the problem's precisions. Following the reference code
(IST-DASLab/EvoPress, ``evo_quant_search.py``, whose levels are 2-6 bits):

- **Start**: ``initial`` random feasible points go through the selection below; the
  winner is the first parent. A point starts with every block at the lowest precision
  whose all-blocks size reaches the budget (EvoPress: the target rounded up), then
  random blocks (among those not at the lowest precision) go one step down until the
  budget holds. With two precisions: every block high, then random blocks lowered.
  :func:`evopress` may instead be given its starting points (``starts``).
- **Mutation** (level steps): ``min(U{1..3}, U{1..3})`` times a random block below the
  top precision goes one step up; then random blocks above the lowest precision go one
  step down until the budget holds again. For blocks of equal size and equal steps
  these are swaps, which keep the stored bytes exactly; otherwise a mutant with more
  than 10 steps in all, or that adds less than 0.8 of the bytes it removes, is dropped
  (EvoPress's rules for mutations across layer sizes). Mutants are distinct from each
  other and from the parent. With two precisions this is today's level switch, draw
  for draw.
- **Selection** in stages of growing fidelity: stage ``k`` scores the survivors of
  stage ``k - 1`` with its game and keeps the ``survivors`` best; the parent joins the
  last stage (elitism); its single survivor is the next parent.

Two departures from the reference code, both in the search's favour at equal cost:
the last stage's game is the objective itself (every calibration sequence, not a
random minibatch), so its values are remembered and the parent is never paid for
twice; and a point already scored by the last stage is not proposed again (its value
is known and cannot beat the parent, which is the best point that stage has seen).
Fitness is the game's value (calibration NLL for the model game; EvoPress's default
is the KL divergence to the float model).

Every game call is counted against ``max_evaluations``; a generation that could
overrun it is shrunk (fewer offspring) so the total never exceeds it.

A search hands its :class:`SearchState` to ``on_generation`` after the first selection
and after every generation; given back as ``resume``, the state continues the search
exactly where it stood, so an interrupted search resumed ends as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from impq.game.base import Game
from impq.search.coalition import level_table, levels_of
from impq.solve.problem import BitProblem

__all__ = ["EvoPressResult", "SearchState", "Stage", "evopress", "mutate", "random_feasible"]

MAX_LEVEL_CHANGES = 10
"""EvoPress drops mutants with more level changes than this."""
MIN_BYTES_RATIO = 0.8
"""EvoPress drops mutants that add less than this share of the bytes they remove."""


@dataclass(frozen=True)
class Stage:
    """One selection stage.

    Attributes:
        game: scores candidates (the last stage's game is the objective; earlier ones may
            draw a new sample of the data on every call, as EvoPress's minibatches).
        survivors: how many candidates this stage keeps (1 for the last stage).
        tokens: tokens one evaluation scores (for reporting; 0 when not meaningful).
    """

    game: Game
    survivors: int
    tokens: int = 0


@dataclass(frozen=True)
class EvoPressResult:
    """The search's final parent and what it cost.

    Attributes:
        choice: (L,) the assignment, an index into the problem's precisions per block.
        coalition: (L,) its level vector, as the game scores it (two precisions: ``True``
            = block at low bits).
        value: its value under the last stage's game (the objective).
        evaluations: game evaluations spent, all stages together.
        evaluations_per_stage: evaluations of each stage.
        tokens: tokens scored, all stages together (``sum(evaluations_k * tokens_k)``).
        generations: generations run after the initial selection.
        history: the parent's value after the start and after every generation.
        known: (K, L) every point (choice vector) the last stage scored, lowest value
            first, and ``known_values`` (K,) their values.
    """

    choice: np.ndarray
    coalition: np.ndarray
    value: float
    evaluations: int
    evaluations_per_stage: list[int]
    tokens: int
    generations: int
    history: list[float] = field(default_factory=list)
    known: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    known_values: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class SearchState:
    """Where a search stands between generations: all it needs to go on exactly.

    Attributes:
        parent: (L,) the current parent (a choice vector).
        value: the parent's value under the last stage's game.
        history: the parent's value after the start and after every generation.
        generations: generations run after the initial selection.
        evaluations_per_stage: evaluations each stage has spent.
        known: (K, L) the points (choice vectors) the last stage has scored, and
            ``known_values`` (K,).
        rng_state: the search generator's ``bit_generator.state``.
    """

    parent: np.ndarray
    value: float
    history: list[float]
    generations: int
    evaluations_per_stage: list[int]
    known: np.ndarray
    known_values: np.ndarray
    rng_state: dict[str, Any]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The state as named arrays (for an ``.npz`` checkpoint)."""
        return {
            "parent": self.parent,
            "value": np.array(self.value),
            "history": np.array(self.history, dtype=np.float64),
            "generations": np.array(self.generations),
            "evaluations_per_stage": np.array(self.evaluations_per_stage, dtype=np.int64),
            "known": self.known,
            "known_values": self.known_values,
            "rng_state": np.array(json.dumps(self.rng_state)),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SearchState:
        """The state :meth:`to_arrays` wrote (a two-precision state written before
        choice vectors, with boolean coalitions, is read as their choice vectors)."""
        return cls(
            parent=_choices(arrays["parent"]),
            value=float(arrays["value"]),
            history=[float(v) for v in arrays["history"]],
            generations=int(arrays["generations"]),
            evaluations_per_stage=[int(n) for n in arrays["evaluations_per_stage"]],
            known=_choices(arrays["known"]),
            known_values=np.asarray(arrays["known_values"], dtype=np.float64),
            rng_state=json.loads(str(arrays["rng_state"])),
        )


def _choices(points: np.ndarray) -> np.ndarray:
    """Choice vectors of stored points; boolean ones are two-precision coalitions."""
    points = np.asarray(points)
    if points.dtype == bool:
        return (~points).astype(np.int64)
    return points.astype(np.int64)


def _step(problem: BitProblem, i: int, k: int) -> int:
    """Bytes block ``i`` gains going from ``precisions[k]`` one step up."""
    return int(problem.sizes[i, k + 1] - problem.sizes[i, k])


def _pick(rng: np.random.Generator, indices: np.ndarray) -> int:
    """``rng.choice(indices)``, draw for draw, without its overhead."""
    return int(indices[rng.integers(0, len(indices))])


def _bytes(problem: BitProblem, choice: np.ndarray) -> int:
    return int(problem.sizes[np.arange(problem.n_blocks), choice].sum())


def random_feasible(problem: BitProblem, rng: np.random.Generator) -> np.ndarray:
    """Every block at the lowest precision whose all-blocks size reaches the budget, then
    random blocks one step down until the budget holds."""
    totals = problem.sizes.sum(axis=0)
    start = int(np.flatnonzero(totals >= problem.budget_bytes)[0])
    choice = np.full(problem.n_blocks, start, dtype=np.int64)
    used = _bytes(problem, choice)
    while used > problem.budget_bytes:
        i = _pick(rng, np.flatnonzero(choice > 0))
        choice[i] -= 1
        used -= _step(problem, i, int(choice[i]))
    return choice


def mutate(parent: np.ndarray, problem: BitProblem, rng: np.random.Generator) -> np.ndarray | None:
    """One EvoPress level-step mutant of ``parent`` within the budget (None: dropped)."""
    top = len(problem.precisions) - 1
    child = parent.copy()
    used = _bytes(problem, child)
    added = removed = changes = 0
    for _ in range(min(int(rng.integers(1, 4)), int(rng.integers(1, 4)))):
        raisable = np.flatnonzero(child < top)
        if not raisable.size:
            break
        i = _pick(rng, raisable)
        step = _step(problem, i, int(child[i]))
        child[i] += 1
        used += step
        added += step
        changes += 1
    while used > problem.budget_bytes:
        i = _pick(rng, np.flatnonzero(child > 0))
        child[i] -= 1
        step = _step(problem, i, int(child[i]))
        used -= step
        removed += step
        changes += 1
    if changes > MAX_LEVEL_CHANGES or added / max(1, removed) < MIN_BYTES_RATIO:
        return None
    return child


class _Evaluator:
    """Counts evaluations per stage and remembers the last stage's values."""

    def __init__(
        self,
        stages: Sequence[Stage],
        max_evaluations: int,
        levels: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.stages = list(stages)
        self.max_evaluations = max_evaluations
        self.levels = levels
        self.per_stage = [0] * len(self.stages)
        self.known: dict[bytes, float] = {}

    @property
    def spent(self) -> int:
        return sum(self.per_stage)

    def __call__(self, k: int, candidates: list[np.ndarray]) -> np.ndarray:
        last = k == len(self.stages) - 1
        values = np.empty(len(candidates))
        todo = [i for i, c in enumerate(candidates) if not (last and c.tobytes() in self.known)]
        if len(todo) > self.max_evaluations - self.spent:
            raise RuntimeError("EvoPress would overrun its evaluation budget; this is a bug")
        if todo:
            points = np.array([candidates[i] for i in todo])
            values[todo] = self.stages[k].game(self.levels(points))
            self.per_stage[k] += len(todo)
        for i, c in enumerate(candidates):
            if last:
                if i in todo:
                    self.known[c.tobytes()] = float(values[i])
                values[i] = self.known[c.tobytes()]
        return values

    def worst_cost(self, n: int) -> int:
        """Evaluations a selection of ``n`` fresh candidates can cost at most."""
        cost, alive = 0, n
        for stage in self.stages:
            cost += alive
            alive = min(alive, stage.survivors)
        return cost


def _select(
    evaluate: _Evaluator, candidates: list[np.ndarray], parent: np.ndarray | None
) -> tuple[np.ndarray, float]:
    alive = candidates
    values: np.ndarray = np.empty(0)
    for k, stage in enumerate(evaluate.stages):
        last = k == len(evaluate.stages) - 1
        if last and parent is not None and not any(np.array_equal(parent, c) for c in alive):
            alive = [*alive, parent]
        values = evaluate(k, alive)
        order = np.argsort(values, kind="stable")[: stage.survivors]
        alive, values = [alive[i] for i in order], values[order]
    return alive[0], float(values[0])


def _fresh(
    make: Callable[[], np.ndarray | None],
    count: int,
    evaluate: _Evaluator,
    exclude: list[np.ndarray],
) -> list[np.ndarray]:
    """Up to ``count`` distinct points from ``make()``, none known or in ``exclude``.

    Gives up after ``50 * count`` draws (a neighbourhood can run out of new points).
    """
    seen = {c.tobytes() for c in exclude} | set(evaluate.known)
    out: list[np.ndarray] = []
    for _ in range(50 * count):
        if len(out) == count:
            break
        point = make()
        if point is None or point.tobytes() in seen:
            continue
        seen.add(point.tobytes())
        out.append(point)
    return out


def _state(
    evaluate: _Evaluator,
    rng: np.random.Generator,
    parent: np.ndarray,
    value: float,
    history: list[float],
    generations: int,
) -> SearchState:
    """The search's state now (points the last stage scored rebuilt from their keys)."""
    known = [np.frombuffer(point, dtype=np.int64) for point in evaluate.known]
    return SearchState(
        parent=parent.copy(),
        value=value,
        history=list(history),
        generations=generations,
        evaluations_per_stage=list(evaluate.per_stage),
        known=np.array(known, dtype=np.int64).reshape(len(known), parent.size),
        known_values=np.array(list(evaluate.known.values()), dtype=np.float64),
        rng_state=dict(rng.bit_generator.state),
    )


def _restore(
    evaluate: _Evaluator, rng: np.random.Generator, resume: SearchState, problem: BitProblem
) -> tuple[np.ndarray, float, list[float], int]:
    """Put ``resume`` into the evaluator and the generator; the parent, its value, the
    history and the generations run."""
    n_stages = len(evaluate.stages)
    if (
        len(resume.evaluations_per_stage) != n_stages
        or resume.parent.shape != (problem.n_blocks,)
        or resume.known.shape != (len(resume.known_values), problem.n_blocks)
        or sum(resume.evaluations_per_stage) > evaluate.max_evaluations
    ):
        raise ValueError(
            "the resume state belongs to another search: it has "
            f"{len(resume.evaluations_per_stage)} stages, {resume.parent.size} blocks and "
            f"{sum(resume.evaluations_per_stage)} evaluations spent; this search has "
            f"{n_stages} stages, {problem.n_blocks} blocks and {evaluate.max_evaluations} "
            "evaluations"
        )
    evaluate.per_stage = list(resume.evaluations_per_stage)
    for point, value in zip(resume.known, resume.known_values, strict=True):
        evaluate.known[_choices(point).tobytes()] = float(value)
    rng.bit_generator.state = resume.rng_state
    return _choices(resume.parent), resume.value, list(resume.history), resume.generations


def _given(problem: BitProblem, starts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The distinct ``starts`` as choice vectors, in order.

    Raises:
        ValueError: no start, one of another shape, or one over the budget.
    """
    out: list[np.ndarray] = []
    for k, start in enumerate(starts):
        choice = np.asarray(start, dtype=np.int64)
        if choice.shape != (problem.n_blocks,) or not (
            choice.min() >= 0 and choice.max() < len(problem.precisions)
        ):
            raise ValueError(
                f"start {k} is not a choice vector of {problem.n_blocks} indices into "
                f"{len(problem.precisions)} precisions: {choice.tolist()}"
            )
        if not problem.feasible(choice):
            raise ValueError(
                f"start {k} takes {problem.stored_bytes(choice)} bytes, over the budget of "
                f"{problem.budget_bytes}"
            )
        if not any(np.array_equal(choice, c) for c in out):
            out.append(choice)
    if not out:
        raise ValueError("starts is empty: give at least one starting point")
    return out


def _affordable(evaluate: _Evaluator, wanted: int) -> int:
    """The most fresh candidates (at most ``wanted``) the remaining budget pays for."""
    count = wanted
    while count > 0 and evaluate.worst_cost(count) > evaluate.max_evaluations - evaluate.spent:
        count -= 1
    return count


def evopress(
    stages: Sequence[Stage] | Game,
    problem: BitProblem,
    max_evaluations: int,
    *,
    offspring: int = 16,
    initial: int = 16,
    seed: int | Sequence[int] | np.random.Generator = 0,
    resume: SearchState | None = None,
    on_generation: Callable[[SearchState], None] | None = None,
    starts: Sequence[np.ndarray] | None = None,
    ladder: Sequence[int] | None = None,
) -> EvoPressResult:
    """Search for the assignment of lowest value that fits ``problem``'s byte budget.

    Args:
        stages: the selection stages, of growing fidelity (see :class:`Stage`); a plain
            :class:`~impq.game.base.Game` is one stage that keeps one survivor.
        problem: blocks' sizes, precisions and the byte budget (its objective is not
            used).
        max_evaluations: game evaluations the search may spend, all stages together.
        offspring: mutants per generation.
        initial: random feasible starting points.
        seed: seed (or generator) of every random choice of the search. Stage games that
            draw data (EvoPress's minibatches) should draw from this generator: it is the
            one whose state a :class:`SearchState` records.
        resume: a state an earlier call with the same arguments handed to
            ``on_generation``: the search goes on from it (its generator state replaces
            the seed's).
        on_generation: called with the search's state after the first selection and
            after every generation (to checkpoint it).
        starts: choice vectors the first selection is made among, instead of
            ``initial`` random feasible points (duplicates dropped; the first ones the
            budget pays for are selected).
        ladder: the games' ladder (descending precisions; level ``k`` = ``ladder[k]``);
            None: the problem's precisions, descending.

    Raises:
        ValueError: no stage, a last stage that keeps more than one survivor, a game with
            another number of players than the problem has blocks, a budget that does
            not pay for the first selection, a ``resume`` state of another search, a
            start over the budget or of another shape, or a precision of the problem
            that is not on the ladder.
    """
    if isinstance(stages, Game):
        stages = [Stage(stages, 1)]
    stages = list(stages)
    if not stages or stages[-1].survivors != 1:
        raise ValueError("EvoPress needs at least one stage, and the last keeps 1 survivor")
    if bad := [s.game.n_players for s in stages if s.game.n_players != problem.n_blocks]:
        raise ValueError(f"stage games have {bad} players; the problem has {problem.n_blocks}")
    if offspring < 1 or initial < 1:
        raise ValueError(f"offspring ({offspring}) and initial ({initial}) must be positive")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    level_table(problem, ladder)  # every precision on the ladder, or a clear error
    evaluate = _Evaluator(stages, max_evaluations, partial(levels_of, problem, ladder=ladder))
    if evaluate.worst_cost(1) > max_evaluations:
        raise ValueError(
            f"{max_evaluations} evaluations do not pay for one selection through "
            f"{len(stages)} stages"
        )
    if resume is None:
        if starts is None:
            count = _affordable(evaluate, initial)
            first = _fresh(partial(random_feasible, problem, rng), count, evaluate, [])
        else:
            first = _given(problem, starts)
            first = first[: _affordable(evaluate, len(first))]
        parent, value = _select(evaluate, first, None)
        history, generations = [value], 0
    else:
        parent, value, history, generations = _restore(evaluate, rng, resume, problem)
    if on_generation is not None:
        on_generation(_state(evaluate, rng, parent, value, history, generations))
    while count := _affordable(evaluate, offspring):
        children = _fresh(partial(mutate, parent, problem, rng), count, evaluate, [parent])
        if not children:
            break
        parent, value = _select(evaluate, children, parent)
        history.append(value)
        generations += 1
        if on_generation is not None:
            on_generation(_state(evaluate, rng, parent, value, history, generations))
    tokens = sum(n * s.tokens for n, s in zip(evaluate.per_stage, stages, strict=True))
    final = _state(evaluate, rng, parent, value, history, generations)
    order = np.argsort(final.known_values, kind="stable")
    return EvoPressResult(
        choice=parent,
        coalition=evaluate.levels(parent),
        value=value,
        evaluations=evaluate.spent,
        evaluations_per_stage=list(evaluate.per_stage),
        tokens=tokens,
        generations=generations,
        history=history,
        known=final.known[order],
        known_values=final.known_values[order],
    )
