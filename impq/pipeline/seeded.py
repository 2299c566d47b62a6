"""Stage ``seeded``: the search seeded by impq, one artifact per budget.

When ``seeded`` is in ``eval.methods``, every budget is searched by
:func:`impq.search.seeded`: EvoPress's level-step search (the ``evopress`` stage's
machinery: the SPQE model game over ``spqe.ladder`` on the first ``spqe.n_samples``
calibration sequences, selection in stages of ``seeded.sequences`` sequences) started
from impq's candidates at that budget: the assignment of every objective method of
``eval.methods`` (``impq``, ``sii``, ``surrogate``) and the verified pick (``verified``)
when it is there. It spends ``seeded.max_evaluations`` model evaluations, its final pick
included: the ``seeded.final`` best points on calibration loss are scored on the
held-back sequences of the ``verify`` stage and the lowest is kept. It writes
``artifacts/seeded/<budget>.json`` and ``metrics/seeded.json``. Without ``seeded`` in
``eval.methods`` it searches nothing: an empty output folder and ``budgets_searched: 0``.

As in the ``evopress`` stage, a budget searched before with the same inputs (its starts
included) is kept, and a search checkpoints after every generation
(``artifacts/checkpoints/seeded-<budget>.npz``) and resumes from it.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from impq.artifacts import read_tensors, write_json
from impq.assignment import Assignment
from impq.config import Params
from impq.estimate import OBJECTIVES
from impq.estimate.checkpoint import Checkpoint
from impq.game import ModelGame
from impq.models import block_param_counts, load_model
from impq.pipeline import methods
from impq.pipeline.baselines import budget_problem
from impq.pipeline.evopress import (
    budget_metrics,
    check_on_ladder,
    game_inputs_key,
    kept_facts,
    save_state,
    search_key,
)
from impq.pipeline.paths import calibration_path
from impq.pipeline.paths import seeded_assignment_path as assignment_path
from impq.pipeline.paths import seeded_checkpoint_path as checkpoint_path
from impq.pipeline.paths import seeded_dir as output_dir
from impq.pipeline.paths import seeded_metrics_path as metrics_path
from impq.pipeline.spqe import game_quantizer
from impq.pipeline.verify import METHOD as VERIFIED
from impq.pipeline.verify import held_back_game, held_back_sequences
from impq.search import SearchState, seeded
from impq.search.coalition import coalition_of
from impq.search.stages import model_stages

__all__ = ["METHOD", "assignment_path", "metrics_path", "output_dir", "run", "start_methods"]

log = logging.getLogger(__name__)

METHOD = "seeded"


def start_methods(params: Params) -> list[str]:
    """The methods whose assignments start the search: the objective methods of
    ``eval.methods`` and the verified pick, in that order.

    Raises:
        ValueError: none of them is in ``eval.methods``.
    """
    starts = [m for m in params.eval.methods if m in OBJECTIVES]
    if VERIFIED in params.eval.methods:
        starts.append(VERIFIED)
    if not starts:
        raise ValueError(
            f"the seeded search starts from impq's candidates: add an objective method "
            f"({sorted(OBJECTIVES)}) or {VERIFIED!r} to eval.methods"
        )
    return starts


def run(params: Params) -> list[Path]:
    """Search every budget from impq's candidates; return the files written.

    Raises:
        FileNotFoundError: the calibration set or a start's assignment is missing.
        ValueError: no start method, no held-back sequences, a precision of
            ``solver.precisions`` off ``spqe.ladder``, or an infeasible budget.
    """
    output_dir(params).mkdir(parents=True, exist_ok=True)
    if METHOD not in params.eval.methods:
        log.info("seeded is not in eval.methods: nothing to search")
        return [write_json(metrics_path(params), {"budgets_searched": 0}, versioned=False)]
    cfg, spqe = params.seeded, params.spqe
    check_on_ladder(params, METHOD)
    names = start_methods(params)
    held_back = held_back_sequences(params)
    ids = read_tensors(calibration_path(params))[0]["input_ids"][: spqe.n_samples]
    model = load_model(params.model)
    block_params = block_param_counts(model)
    starts = {
        b: {m: Assignment.load(methods.assignment_input_path(params, m, b)).bits for m in names}
        for b in params.budgets
    }
    quantize, quantizer_key = game_quantizer(params, model)
    game_inputs = game_inputs_key(model, quantizer_key, ids, held_back)
    settings = cfg.model_dump(mode="json")
    keys = {}
    for b in params.budgets:
        given = {m: sorted(bits.items()) for m, bits in starts[b].items()}
        keys[b] = search_key(
            params, game_inputs, b, cfg.max_evaluations, {**settings, "starts": given}
        )
    kept = {b: kept_facts(assignment_path(params, b), keys[b]) for b in params.budgets}
    done = {b: extra for b, extra in kept.items() if extra is not None}
    written = [assignment_path(params, b) for b in done]
    metrics: dict[str, Any] = {"budgets_searched": len(params.budgets)}
    for budget, extra in done.items():
        metrics.update(budget_metrics(budget, extra))
    todo = [b for b in params.budgets if b not in done]
    if not todo:
        written.append(write_json(metrics_path(params), metrics, versioned=False))
        return written
    with (
        ModelGame(
            model, ids, quantize, ladder=tuple(spqe.ladder), batch_size=1, progress=False,
            cache_mb=spqe.cache_mb,
        ) as game,
        held_back_game(params, model, held_back, quantize) as held,
    ):  # fmt: skip
        for budget in todo:
            start = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, round(1000 * float(budget))])
            stages = model_stages(game, cfg.survivors, cfg.sequences, rng)
            problem = budget_problem(params, block_params, budget)
            points = {m: coalition_of(problem, bits) for m, bits in starts[budget].items()}
            checkpoint = Checkpoint(checkpoint_path(params, budget), keys[budget])
            saved = checkpoint.load()
            resume = None if saved is None else SearchState.from_arrays(saved)
            result = seeded(
                stages,
                problem,
                points,
                cfg.max_evaluations,
                held_back=held,
                final=cfg.final,
                offspring=cfg.offspring,
                seed=rng,
                resume=resume,
                on_generation=partial(save_state, checkpoint, METHOD, budget, cfg.max_evaluations),
            )
            search = result.search
            facts: dict[str, Any] = {
                "evaluations": result.evaluations,
                "evaluations_per_stage": search.evaluations_per_stage,
                "max_evaluations": cfg.max_evaluations,
                "tokens": search.tokens,
                "generations": search.generations,
                "calibration_nll": search.value,
                "held_back_nll": None if result.final is None else result.final.value,
                "started_from": result.started_from,
                "seconds": time.perf_counter() - start,
                "resumed": resume is not None,
            }
            assignment = Assignment(
                bits=problem.bits(result.choice),
                method=METHOD,
                budget_bits=float(budget),
                stored_bytes=int(problem.stored_bytes(result.choice)),
                avg_bits=problem.avg_bits(result.choice),
                extra={
                    **facts,
                    "history": search.history,
                    "picked": None if result.final is None else result.final.pick.name,
                    "budget_bytes": problem.budget_bytes,
                    "precisions": list(problem.precisions),
                    "group_size": problem.group_size,
                    "starts": names,
                    "settings": settings,
                    "search_key": keys[budget],
                },
            )
            written.append(assignment.save(assignment_path(params, budget)))
            checkpoint.clear()
            metrics.update(budget_metrics(budget, facts))
            log.info(
                "seeded @ %.3g bits: from %s, %d evaluations, %d generations, calibration NLL "
                "%.5f, %.1f s",
                budget, result.started_from, result.evaluations, search.generations,
                search.value, facts["seconds"],
            )  # fmt: skip
    written.append(write_json(metrics_path(params), metrics, versioned=False))
    return written
