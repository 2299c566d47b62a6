"""Stage ``baselines``: isolated-metric assignments, one artifact per method and budget.

For every method of ``eval.methods`` that is a baseline (a registered name, or a
replicate ``<name>-<k>`` of a seeded one: ``random-1`` is the random order with seed
``eval.seed + 1``), score the blocks once and write
``artifacts/baselines/<method>/<budget>.json`` for every budget, under the same byte
budget as IMPQ (:class:`~impq.solve.problem.BitProblem` with ``solver.precisions`` and
``backends.group_size``). ``uniform-<bits>`` (every block at those bits) is written at
every budget as a reference point with its own stored bytes; where they exceed the
budget its assignment says so (``extra.over_budget``) and the sweep reports it without
the budget check. The stage's one output is the folder ``artifacts/baselines``,
whichever methods and budgets are configured (DVC empties it before the stage runs, so it
never holds a stale assignment).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from impq.artifacts import read_tensors
from impq.assignment import Assignment
from impq.baselines import BaselineInputs, base, get_baseline, parse_baseline
from impq.baselines.base import fixed_bits
from impq.config import Params
from impq.estimate.result import ShapleyResult
from impq.models import block_param_counts, load_model
from impq.pipeline.methods import check_methods, is_baseline
from impq.pipeline.paths import baseline_path, calibration_path
from impq.pipeline.paths import baselines_dir as output_dir
from impq.pipeline.paths import shapley_path as shapley_input_path
from impq.solve.problem import BitProblem

__all__ = [
    "baseline_methods",
    "baseline_path",
    "budget_problem",
    "load_inputs",
    "method_seed",
    "output_dir",
    "run",
    "run_method",
]

log = logging.getLogger(__name__)


def baseline_methods(params: Params) -> list[str]:
    """The methods of ``eval.methods`` this stage writes (baselines and their replicates).

    Raises:
        ValueError: a method that no stage writes (see :mod:`impq.pipeline.methods`).
    """
    check_methods(params)
    return [m for m in params.eval.methods if is_baseline(m)]


def method_seed(params: Params, method: str) -> int:
    """The seed of a baseline method: ``eval.seed + k`` for a replicate ``<name>-<k>``."""
    return params.eval.seed + (parse_baseline(method)[1] or 0)


def budget_problem(params: Params, block_params: list[int], budget: float) -> BitProblem:
    """The byte budget IMPQ works under over ``spqe.ladder``, without an objective (for
    the rankings and the searches)."""
    return base.budget_problem(
        block_params,
        budget,
        params.spqe.ladder,
        precisions=params.solver.precisions,
        group_size=params.backends.group_size,
    )


def load_inputs(params: Params, methods: list[str]) -> tuple[BaselineInputs, list[int]]:
    """What ``methods`` need (model, calibration, SPQE result) and the blocks' sizes."""
    needs = set().union(*(get_baseline(m).needs for m in methods)) if methods else set()
    model = load_model(params.model)
    calibration = None
    if "calibration" in needs:
        calibration = read_tensors(calibration_path(params))[0]["input_ids"]
    shapley = ShapleyResult.load(shapley_input_path(params)) if "shapley" in needs else None
    inputs = BaselineInputs(
        model=model if "model" in needs else None,
        calibration=calibration,
        shapley=shapley,
        seed=params.eval.seed,
        batch_size=params.eval.batch_size,
    )
    return inputs, block_param_counts(model)


def run_method(
    params: Params, method: str, inputs: BaselineInputs, block_params: list[int]
) -> list[Path]:
    """Score the blocks with ``method`` and write its assignment for every budget."""
    baseline = get_baseline(method)
    if baseline.seeded:
        inputs = replace(inputs, seed=method_seed(params, method))
    scores = baseline.scores(inputs, len(block_params))
    written = []
    for budget in params.budgets:
        problem = budget_problem(params, block_params, budget)
        bits = baseline.assign(scores, problem)
        choice = problem.choice(bits)
        extra: dict[str, Any] = {
            "scores": [float(s) for s in scores],
            "budget_bytes": problem.budget_bytes,
            "min_bytes": problem.min_bytes,
            "max_bytes": problem.max_bytes,
            "precisions": list(problem.precisions),
            "group_size": problem.group_size,
        }
        if baseline.seeded:
            extra["seed"] = inputs.seed
        stored = int(problem.stored_bytes(choice))
        if stored > problem.budget_bytes:
            if fixed_bits(method) is None:
                raise RuntimeError(f"{method} @ {budget} bits is over the budget; this is a bug")
            extra["over_budget"] = True
        assignment = Assignment(
            bits=bits,
            method=method,
            budget_bits=float(budget),
            stored_bytes=stored,
            avg_bits=problem.avg_bits(choice),
            extra=extra,
        )
        written.append(assignment.save(baseline_path(params, budget, method)))
        log.info(
            "%s @ %.3g bits: avg %.3f bits, %d/%d bytes, bits %s",
            method, budget, assignment.avg_bits, assignment.stored_bytes,
            problem.budget_bytes, [bits[i] for i in sorted(bits)],
        )  # fmt: skip
    return written


def run(params: Params) -> list[Path]:
    """Write every baseline's assignments; return the files written.

    Raises:
        FileNotFoundError: the calibration set (LIM) or SPQE result (shapley) is missing.
        ValueError: an unknown method or an infeasible budget.
    """
    methods = baseline_methods(params)
    inputs, block_params = load_inputs(params, methods)
    return [p for m in methods for p in run_method(params, m, inputs, block_params)]
