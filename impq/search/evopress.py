"""EvoPress (Sieberling et al., ICML 2025) for per-block bits: evolution on the game itself.

A search point is a coalition (``True`` = the block at low bits) that fits the byte
budget of a :class:`~impq.solve.problem.BitProblem`. Following the reference code
(IST-DASLab/EvoPress, ``evo_quant_search.py``):

- **Start**: ``initial`` random feasible points (every block high, then random blocks
  lowered until the budget holds, as EvoPress starts a non-integer target) go through
  the selection below; the winner is the first parent.
- **Mutation** (level switch): ``min(U{1..3}, U{1..3})`` random low blocks are raised,
  then random high blocks are lowered until the budget holds again. For blocks of equal
  size these are swaps, which keep the stored bytes exactly; for mixed sizes a mutant
  with more than 10 level changes, or that adds less than 0.8 of the bytes it removes,
  is dropped (EvoPress's rules for mutations across layer sizes). Mutants are distinct
  from each other and from the parent.
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
from impq.search.coalition import require_two_precisions
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
        coalition: (L,) the assignment, ``True`` = block at low bits.
        value: its value under the last stage's game (the objective).
        evaluations: game evaluations spent, all stages together.
        evaluations_per_stage: evaluations of each stage.
        tokens: tokens scored, all stages together (``sum(evaluations_k * tokens_k)``).
        generations: generations run after the initial selection.
        history: the parent's value after the start and after every generation.
    """

    coalition: np.ndarray
    value: float
    evaluations: int
    evaluations_per_stage: list[int]
    tokens: int
    generations: int
    history: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class SearchState:
    """Where a search stands between generations: all it needs to go on exactly.

    Attributes:
        parent: (L,) the current parent.
        value: the parent's value under the last stage's game.
        history: the parent's value after the start and after every generation.
        generations: generations run after the initial selection.
        evaluations_per_stage: evaluations each stage has spent.
        known: (K, L) the points the last stage has scored, and ``known_values`` (K,).
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
        """The state :meth:`to_arrays` wrote."""
        return cls(
            parent=np.asarray(arrays["parent"], dtype=bool),
            value=float(arrays["value"]),
            history=[float(v) for v in arrays["history"]],
            generations=int(arrays["generations"]),
            evaluations_per_stage=[int(n) for n in arrays["evaluations_per_stage"]],
            known=np.asarray(arrays["known"], dtype=bool),
            known_values=np.asarray(arrays["known_values"], dtype=np.float64),
            rng_state=json.loads(str(arrays["rng_state"])),
        )


def _sizes(problem: BitProblem) -> tuple[np.ndarray, np.ndarray]:
    require_two_precisions(problem)
    return problem.sizes[:, 0], problem.sizes[:, 1]


def _bytes(coalition: np.ndarray, low: np.ndarray, high: np.ndarray) -> int:
    return int(np.where(coalition, low, high).sum())


def random_feasible(problem: BitProblem, rng: np.random.Generator) -> np.ndarray:
    """Every block high, then random blocks lowered until the budget holds."""
    low, high = _sizes(problem)
    coalition = np.zeros(problem.n_blocks, dtype=bool)
    used = _bytes(coalition, low, high)
    while used > problem.budget_bytes:
        i = int(rng.choice(np.flatnonzero(~coalition)))
        coalition[i] = True
        used -= int(high[i] - low[i])
    return coalition


def mutate(parent: np.ndarray, problem: BitProblem, rng: np.random.Generator) -> np.ndarray | None:
    """One EvoPress level-switch mutant of ``parent`` within the budget (None: dropped)."""
    low, high = _sizes(problem)
    child = parent.copy()
    used = _bytes(child, low, high)
    added = removed = changes = 0
    for _ in range(min(int(rng.integers(1, 4)), int(rng.integers(1, 4)))):
        raisable = np.flatnonzero(child)
        if not raisable.size:
            break
        i = int(rng.choice(raisable))
        child[i] = False
        used += int(high[i] - low[i])
        added += int(high[i] - low[i])
        changes += 1
    while used > problem.budget_bytes:
        i = int(rng.choice(np.flatnonzero(~child)))
        child[i] = True
        used -= int(high[i] - low[i])
        removed += int(high[i] - low[i])
        changes += 1
    if changes > MAX_LEVEL_CHANGES or added / max(1, removed) < MIN_BYTES_RATIO:
        return None
    return child


class _Evaluator:
    """Counts evaluations per stage and remembers the last stage's values."""

    def __init__(self, stages: Sequence[Stage], max_evaluations: int) -> None:
        self.stages = list(stages)
        self.max_evaluations = max_evaluations
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
            values[todo] = self.stages[k].game(np.array([candidates[i] for i in todo]))
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
    known = [np.frombuffer(point, dtype=bool) for point in evaluate.known]
    return SearchState(
        parent=parent.copy(),
        value=value,
        history=list(history),
        generations=generations,
        evaluations_per_stage=list(evaluate.per_stage),
        known=np.array(known, dtype=bool).reshape(len(known), parent.size),
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
        evaluate.known[point.tobytes()] = float(value)
    rng.bit_generator.state = resume.rng_state
    return resume.parent.copy(), resume.value, list(resume.history), resume.generations


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
) -> EvoPressResult:
    """Search for the coalition of lowest value that fits ``problem``'s byte budget.

    Args:
        stages: the selection stages, of growing fidelity (see :class:`Stage`); a plain
            :class:`~impq.game.base.Game` is one stage that keeps one survivor.
        problem: blocks' sizes and the byte budget (exactly two precisions; its
            objective is not used).
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

    Raises:
        ValueError: no stage, a last stage that keeps more than one survivor, a game with
            another number of players than the problem has blocks, a budget that does
            not pay for the first selection, or a ``resume`` state of another search.
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
    evaluate = _Evaluator(stages, max_evaluations)
    if evaluate.worst_cost(1) > max_evaluations:
        raise ValueError(
            f"{max_evaluations} evaluations do not pay for one selection through "
            f"{len(stages)} stages"
        )
    if resume is None:
        count = _affordable(evaluate, initial)
        starts = _fresh(partial(random_feasible, problem, rng), count, evaluate, [])
        parent, value = _select(evaluate, starts, None)
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
    return EvoPressResult(
        coalition=parent,
        value=value,
        evaluations=evaluate.spent,
        evaluations_per_stage=list(evaluate.per_stage),
        tokens=tokens,
        generations=generations,
        history=history,
    )
