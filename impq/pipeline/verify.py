"""Stage ``verify``: the verified final pick, one artifact per budget.

When ``verified`` is in ``eval.methods``, for every budget the candidates are the
assignments of every other method of ``eval.methods`` at that budget (``impq``, the
objective's choice, first; reference points over the budget, ``uniform-<bits>``, left
out) and each one's best one-swap neighbour under the IMPQ objective (the program of the
``assign`` stage: one block a precision step up, another a step down);
:func:`impq.search.verify.verified_pick` scores them, up to ``verify.max_evaluations``
(default 2L) per budget, on the model game over ``spqe.ladder`` on the calibration
sequences SPQE did not use (the calibration artifact holds
``data.calibration.n_samples`` sequences, SPQE uses the first ``spqe.n_samples``) and
keeps the lowest. It writes ``artifacts/verify/<budget>.json`` (method ``verified``) and
``metrics/verify.json``: per budget whether the pick differs from the objective's
choice, where it came from, the held-back NLL of both and the evaluations spent; and how
often the pick differed, over all budgets. Without ``verified`` in ``eval.methods`` it
verifies nothing: an empty output folder and ``budgets_verified: 0``.

The searches (``evopress``, ``seeded``: :data:`impq.pipeline.methods.SEARCHES`) are no
candidates: they spend evaluations of their own, and the verified pick is what impq
ships at the cost of SPQE and this stage. A budget verified before with the same inputs
(the held-back game's, the candidates in order, the evaluation count:
:func:`inputs_key`) is kept as it is, so adding a method that is no candidate, or a
budget, verifies only what changed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from impq.artifacts import fingerprint, read_tensors, write_json
from impq.assignment import Assignment
from impq.config import Params
from impq.estimate.level_objective import LevelObjective
from impq.game import ModelGame, WeightQuantizer
from impq.models import block_param_counts, load_model
from impq.pipeline import methods
from impq.pipeline.assign import objective_problem
from impq.pipeline.evopress import game_inputs_key, kept_facts
from impq.pipeline.paths import calibration_path, objective_path
from impq.pipeline.paths import verify_assignment_path as assignment_path
from impq.pipeline.paths import verify_dir as output_dir
from impq.pipeline.paths import verify_metrics_path as metrics_path
from impq.pipeline.spqe import game_quantizer
from impq.search.coalition import choice_of, coalition_of
from impq.search.verify import Candidate, candidates, verified_pick
from impq.solve.problem import BitProblem

__all__ = [
    "METHOD",
    "REFERENCE",
    "assignment_path",
    "held_back_game",
    "held_back_sequences",
    "inputs_key",
    "metrics_path",
    "output_dir",
    "run",
]

log = logging.getLogger(__name__)

METHOD = "verified"
REFERENCE = "impq"
"""The method whose assignment is the objective's choice."""

FACTS = (
    "differs",
    "picked",
    "held_back_nll",
    "reference_held_back_nll",
    "gain",
    "evaluations",
    "candidates",
    "seconds",
)
"""What a budget's pick reports as metrics (``seconds``: of the run that verified it)."""


def held_back_sequences(params: Params) -> torch.Tensor:
    """The calibration sequences SPQE did not use (the first ``verify.n_samples`` of them).

    Raises:
        ValueError: SPQE used every calibration sequence.
    """
    ids = read_tensors(calibration_path(params))[0]["input_ids"]
    used = params.spqe.n_samples
    if used is None or used >= len(ids):
        raise ValueError(
            f"the verified pick needs calibration sequences SPQE did not use, but SPQE uses "
            f"{len(ids) if used is None else used} of the {len(ids)}: set spqe.n_samples "
            "below data.calibration.n_samples"
        )
    return ids[used:][: params.verify.n_samples]


def held_back_game(
    params: Params,
    model: torch.nn.Module,
    held_back: torch.Tensor,
    quantize: WeightQuantizer | None = None,
) -> ModelGame:
    """The SPQE game (backend, precisions, batch size) played on the held-back sequences:
    what the verified pick scores its candidates with.

    Args:
        quantize: the SPQE game's weight quantizer for ``model``, if the caller holds it
            (default: :func:`~impq.pipeline.spqe.game_quantizer`'s).
    """
    spqe = params.spqe
    if quantize is None:
        quantize, _ = game_quantizer(params, model)
    return ModelGame(
        model,
        held_back,
        quantize,
        ladder=tuple(spqe.ladder),
        batch_size=spqe.batch_size,
        progress=False,
    )


def _candidates(
    params: Params, result: LevelObjective, budget: float
) -> tuple[BitProblem, list[Candidate], int]:
    """The budget's program, its candidates in order and how many of them to evaluate."""
    problem = objective_problem(params, result, budget)
    loaded = {
        m: Assignment.load(methods.assignment_input_path(params, m, budget))
        for m in params.eval.methods
        if m != METHOD and m not in methods.SEARCHES
    }
    assignments = {  # a reference point over the budget (uniform-<bits>) is no candidate
        m: coalition_of(problem, a.bits)
        for m, a in loaded.items()
        if not a.extra.get("over_budget")
    }
    cands = candidates(problem, assignments, reference=REFERENCE)
    return problem, cands, params.verify.max_evaluations or 2 * problem.n_blocks


def inputs_key(game_inputs: str, cands: list[Candidate], limit: int) -> str:
    """Fingerprint of what one budget's pick depends on: the held-back game's inputs
    (:func:`~impq.pipeline.evopress.game_inputs_key`), the candidates in order and how
    many of them are evaluated."""
    listed = [[c.name, np.asarray(c.coalition).astype(int).tolist()] for c in cands]
    return fingerprint(game_inputs, json.dumps({"candidates": listed, "limit": limit}))


def _verify_budget(
    game: ModelGame,
    budget: float,
    problem: BitProblem,
    cands: list[Candidate],
    limit: int,
    key: str,
    n_held_back: int,
) -> Assignment:
    start = time.perf_counter()
    pick = verified_pick(game, cands, limit)
    seconds = time.perf_counter() - start
    choice = choice_of(problem, pick.pick.coalition)
    facts = {
        "differs": pick.differs,
        "picked": pick.pick.name,
        "held_back_nll": pick.value,
        "reference_held_back_nll": pick.reference_value,
        "gain": pick.reference_value - pick.value,
        "evaluations": pick.evaluations,
        "candidates": len(cands),
        "seconds": seconds,
    }
    return Assignment(
        bits=problem.bits(choice),
        method=METHOD,
        budget_bits=float(budget),
        stored_bytes=int(problem.stored_bytes(choice)),
        avg_bits=problem.avg_bits(choice),
        extra={
            **facts,
            "objective": float(problem.objective(choice)),
            "held_back_values": [[name, v] for name, v in pick.values.items()],  # in order
            "skipped": pick.skipped,
            "held_back_sequences": n_held_back,
            "max_evaluations": limit,
            "budget_bytes": problem.budget_bytes,
            "precisions": list(problem.precisions),
            "group_size": problem.group_size,
            "inputs_key": key,
        },
    )


def run(params: Params) -> list[Path]:
    """Verify every budget; return the files written.

    Raises:
        FileNotFoundError: the calibration set, the SPQE result or an assignment is missing.
        ValueError: no held-back sequences, ``impq`` missing from ``eval.methods``, or
            assignments at precisions off ``solver.precisions`` or ``spqe.ladder``.
    """
    output_dir(params).mkdir(parents=True, exist_ok=True)
    if METHOD not in params.eval.methods:
        log.info("verified is not in eval.methods: nothing to verify")
        return [write_json(metrics_path(params), {"budgets_verified": 0}, versioned=False)]
    if REFERENCE not in params.eval.methods:
        raise ValueError(
            f"the verified pick starts from the objective's choice: add {REFERENCE!r} to "
            "eval.methods"
        )
    methods.check_methods(params)
    held_back = held_back_sequences(params)
    result = LevelObjective.load(objective_path(params, REFERENCE))
    model = load_model(params.model)
    if len(block_param_counts(model)) != result.n_blocks:
        raise ValueError(f"SPQE result has {result.n_blocks} blocks; the model has others")
    setup = time.perf_counter()
    quantize, quantizer_key = game_quantizer(params, model)
    game_inputs = game_inputs_key(model, quantizer_key, held_back)
    todo: dict[float, tuple[BitProblem, list[Candidate], int, str]] = {}
    picked: dict[float, dict[str, Any]] = {}  # budget -> its pick's facts
    for budget in params.budgets:
        problem, cands, limit = _candidates(params, result, budget)
        key = inputs_key(game_inputs, cands, limit)
        kept = kept_facts(assignment_path(params, budget), key, field="inputs_key")
        if kept is None:
            todo[budget] = (problem, cands, limit, key)
        else:
            picked[budget] = kept
    if picked:
        log.info("verified @ %s bits: verified before with the same inputs, kept", sorted(picked))
    metrics: dict[str, Any] = {
        "budgets_verified": len(params.budgets),
        "held_back_sequences": len(held_back),
    }
    if todo:
        with held_back_game(params, model, held_back, quantize) as game:
            metrics["setup_seconds"] = time.perf_counter() - setup
            for budget, (problem, cands, limit, key) in todo.items():
                pick = _verify_budget(game, budget, problem, cands, limit, key, len(held_back))
                pick.save(assignment_path(params, budget))
                picked[budget] = pick.extra
                log.info(
                    "verified @ %.3g bits: %s (held-back NLL %.5f vs %.5f for %s), "
                    "%d of %d candidates evaluated",
                    budget, pick.extra["picked"], pick.extra["held_back_nll"],
                    pick.extra["reference_held_back_nll"], REFERENCE,
                    pick.extra["evaluations"], pick.extra["candidates"],
                )  # fmt: skip
    for budget in params.budgets:
        extra = picked[budget]
        metrics.update(
            {
                f"{float(budget)}/{k}": int(extra[k]) if isinstance(extra[k], bool) else extra[k]
                for k in FACTS
            }
        )
    n = len(params.budgets)
    metrics["differs"] = sum(bool(metrics[f"{float(b)}/differs"]) for b in params.budgets)
    metrics["differs_share"] = metrics["differs"] / n
    metrics["evaluations"] = sum(metrics[f"{float(b)}/evaluations"] for b in params.budgets)
    metrics["seconds"] = sum(metrics[f"{float(b)}/seconds"] for b in params.budgets)
    written = [assignment_path(params, b) for b in params.budgets]
    written.append(write_json(metrics_path(params), metrics, versioned=False))
    return written
