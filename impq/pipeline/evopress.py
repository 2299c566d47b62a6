"""Stage ``evopress``: the EvoPress baseline at SPQE's evaluation count, one artifact per budget.

When ``evopress`` is in ``eval.methods``, the model game is built as SPQE built it (the
first ``spqe.n_samples`` calibration sequences, ``spqe.backend`` over ``spqe.ladder``,
one sequence per chunk so that a stage can score any number of them),
and :func:`impq.search.evopress` searches every budget with as many model evaluations
as the SPQE run spent (``2 + M (L - 1)``, read from its samples; ``evopress.max_evaluations``
caps it). The searches share the game, so its quantized weights and prefix cache
(``spqe.cache_mb``: an offspring starts at its first block that differs from a cached
prefix, so more room saves blocks and never changes a value). It writes
``artifacts/evopress/<budget>.json`` and ``metrics/evopress.json`` (evaluations, tokens
scored and their equivalent in full evaluations, generations, seconds). Without
``evopress`` in ``eval.methods`` it searches nothing: an empty output folder and
``budgets_searched: 0``.

A search takes as long as SPQE (hours on a real model), so no finished work is redone:
a budget whose assignment was searched with the same inputs (model, calibration, game,
search settings, evaluation count: :func:`search_key`) is kept as it is, and a search
checkpoints after every generation (``artifacts/checkpoints/evopress-<budget>.npz``), so
an interrupted one resumes where it stood and ends as it would have uninterrupted.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from impq.artifacts import fingerprint, read_tensors, write_json
from impq.assignment import Assignment
from impq.config import Params
from impq.estimate.checkpoint import Checkpoint
from impq.game import ModelGame, model_fingerprint
from impq.models import block_param_counts, load_model
from impq.pipeline.baselines import budget_problem
from impq.pipeline.paths import calibration_path
from impq.pipeline.paths import evopress_assignment_path as assignment_path
from impq.pipeline.paths import evopress_checkpoint_path as checkpoint_path
from impq.pipeline.paths import evopress_dir as output_dir
from impq.pipeline.paths import evopress_metrics_path as metrics_path
from impq.pipeline.spqe import game_quantizer, load_samples
from impq.search import SearchState, evopress
from impq.search.stages import model_stages

__all__ = [
    "FACTS",
    "METHOD",
    "assignment_path",
    "budget_metrics",
    "check_on_ladder",
    "game_inputs_key",
    "kept_facts",
    "metrics_path",
    "output_dir",
    "run",
    "save_state",
    "search_budget",
    "search_key",
    "spqe_evaluations",
]

log = logging.getLogger(__name__)

METHOD = "evopress"

FACTS = (
    "evaluations",
    "max_evaluations",
    "tokens",
    "full_evaluation_equivalents",
    "full_block_evaluations",
    "generations",
    "calibration_nll",
    "seconds",
    "resumed",
)
"""What a search reports as metrics (``seconds``: of the run that finished it)."""


def spqe_evaluations(params: Params) -> int:
    """Model evaluations the SPQE run spent: its two endpoints and every walk step.

    Raises:
        FileNotFoundError: no SPQE samples (run ``impq spqe``).
    """
    samples = load_samples(params)[0]
    return int(samples["endpoints"].size + samples["walks"].size)


def search_budget(params: Params) -> int:
    """Evaluations per EvoPress search: SPQE's count, capped by ``evopress.max_evaluations``."""
    cap = params.evopress.max_evaluations
    spqe = spqe_evaluations(params)
    return spqe if cap is None else min(spqe, cap)


def _seed(params: Params, budget: float) -> list[int]:
    """Seed of one budget's search: the same whatever the other budgets are."""
    return [params.evopress.seed, round(1000 * float(budget))]


def game_inputs_key(model: torch.nn.Module, quantizer_key: str, *ids: torch.Tensor) -> str:
    """Fingerprint of what a search's game values depend on beyond the settings: the float
    model, the token ids its games score and the per-block database they play on (the
    game's quantizer key, if any)."""
    parts = [model_fingerprint(model), *(fingerprint(t) for t in ids)]
    return fingerprint(*parts, *([quantizer_key] if quantizer_key else []))


def search_key(
    params: Params,
    game_inputs: str,
    budget: float,
    evaluations: int,
    search: dict[str, Any] | None = None,
) -> str:
    """Fingerprint of everything one budget's search depends on.

    Args:
        game_inputs: fingerprint of the game's inputs (:func:`game_inputs_key`).
        search: the search's settings (default: the ``evopress`` section but its cap).
    """
    spqe = params.spqe
    if search is None:
        search = params.evopress.model_dump(mode="json", exclude={"max_evaluations"})
    settings = {
        "game": [spqe.backend, spqe.group_size, *spqe.ladder],  # [4, 2]: the keys of before
        "search": search,
        "budget": float(budget),
        "group_size": params.backends.group_size,
        "evaluations": evaluations,
    }
    return fingerprint(game_inputs, json.dumps(settings, sort_keys=True))


def kept_facts(path: Path, key: str, field: str = "search_key") -> dict[str, Any] | None:
    """The facts of the assignment at ``path`` if its ``field`` is ``key`` (it was searched,
    or verified, with the same inputs), else None."""
    if not path.is_file():
        return None
    try:
        extra = Assignment.load(path).extra
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("searching again: %s is unreadable (%s)", path, err)
        return None
    return extra if extra.get(field) == key else None


def run(params: Params) -> list[Path]:
    """Search every budget with EvoPress; return the files written.

    Raises:
        FileNotFoundError: the calibration set or the SPQE samples are missing.
        ValueError: a precision of ``solver.precisions`` is not on ``spqe.ladder``, a
            stage asks for more sequences than SPQE used, or an infeasible budget.
    """
    output_dir(params).mkdir(parents=True, exist_ok=True)
    if METHOD not in params.eval.methods:
        log.info("evopress is not in eval.methods: nothing to search")
        return [write_json(metrics_path(params), {"budgets_searched": 0}, versioned=False)]
    cfg, spqe = params.evopress, params.spqe
    check_on_ladder(params, METHOD)
    evaluations = search_budget(params)
    ids = read_tensors(calibration_path(params))[0]["input_ids"][: spqe.n_samples]
    model = load_model(params.model)
    block_params = block_param_counts(model)
    quantize, quantizer_key = game_quantizer(params, model)
    game_inputs = game_inputs_key(model, quantizer_key, ids)
    keys = {b: search_key(params, game_inputs, b, evaluations) for b in params.budgets}
    kept = {b: kept_facts(assignment_path(params, b), keys[b]) for b in params.budgets}
    done = {b: extra for b, extra in kept.items() if extra is not None}
    todo = [b for b in params.budgets if b not in done]
    if done:
        log.info("evopress @ %s bits: searched before with the same inputs, kept", sorted(done))
    written = [assignment_path(params, b) for b in done]
    metrics: dict[str, Any] = {
        "budgets_searched": len(params.budgets),
        "spqe_evaluations": spqe_evaluations(params),
    }
    for budget, extra in done.items():
        metrics.update(budget_metrics(budget, extra))
    if not todo:
        written.append(write_json(metrics_path(params), metrics, versioned=False))
        return written
    with ModelGame(
        model,
        ids,
        quantize,
        ladder=tuple(spqe.ladder),
        batch_size=1,
        progress=False,
        cache_mb=spqe.cache_mb,
    ) as game:
        full_tokens = game.chunk_tokens(range(game.n_chunks))
        metrics["tokens_per_full_evaluation"] = full_tokens
        metrics["state_cache_mb"] = game.cache_mb
        for budget in todo:
            start = time.perf_counter()
            blocks_before = game.n_block_evaluations
            rng = np.random.default_rng(_seed(params, budget))
            stages = model_stages(game, cfg.survivors, cfg.sequences, rng)
            problem = budget_problem(params, block_params, budget)
            checkpoint = Checkpoint(checkpoint_path(params, budget), keys[budget])
            saved = checkpoint.load()
            resume = None if saved is None else SearchState.from_arrays(saved)
            if resume is not None:
                log.info(
                    "evopress @ %.3g bits: resuming from %s after %d generations",
                    budget, checkpoint.path, resume.generations,
                )  # fmt: skip
            result = evopress(
                stages,
                problem,
                evaluations,
                offspring=cfg.offspring,
                initial=cfg.initial,
                seed=rng,
                resume=resume,
                on_generation=partial(save_state, checkpoint, METHOD, budget, evaluations),
            )
            choice = result.choice
            facts: dict[str, Any] = {
                "evaluations": result.evaluations,
                "evaluations_per_stage": result.evaluations_per_stage,
                "max_evaluations": evaluations,
                "tokens": result.tokens,
                "full_evaluation_equivalents": result.tokens / full_tokens,
                "full_block_evaluations": game.n_block_evaluations - blocks_before,
                "generations": result.generations,
                "calibration_nll": result.value,
                "seconds": time.perf_counter() - start,
                "resumed": resume is not None,
            }
            assignment = Assignment(
                bits=problem.bits(choice),
                method=METHOD,
                budget_bits=float(budget),
                stored_bytes=int(problem.stored_bytes(choice)),
                avg_bits=problem.avg_bits(choice),
                extra={
                    **facts,
                    "history": result.history,
                    "budget_bytes": problem.budget_bytes,
                    "precisions": list(problem.precisions),
                    "group_size": problem.group_size,
                    "seed": _seed(params, budget),
                    "survivors": cfg.survivors,
                    "sequences": cfg.sequences,
                    "offspring": cfg.offspring,
                    "initial": cfg.initial,
                    "search_key": keys[budget],
                },
            )
            written.append(assignment.save(assignment_path(params, budget)))
            checkpoint.clear()
            metrics.update(budget_metrics(budget, facts))
            log.info(
                "evopress @ %.3g bits: %d evaluations (%.1f full-evaluation equivalents), "
                "%d generations, calibration NLL %.5f, %.1f s",
                budget, result.evaluations, facts["full_evaluation_equivalents"],
                result.generations, result.value, facts["seconds"],
            )  # fmt: skip
    written.append(write_json(metrics_path(params), metrics, versioned=False))
    return written


def check_on_ladder(params: Params, method: str) -> None:
    """Raise ValueError unless every precision of ``solver.precisions`` is on
    ``spqe.ladder`` (a search on the model game scores measured levels only)."""
    ladder = params.spqe.ladder
    if off := sorted(set(params.solver.precisions) - set(ladder)):
        raise ValueError(
            f"{method} searches the SPQE game, which measures spqe.ladder {ladder}: "
            f"solver.precisions {params.solver.precisions} has {off} off it"
        )


def save_state(
    checkpoint: Checkpoint, method: str, budget: float, evaluations: int, state: SearchState
) -> None:
    """Save a search's state; say how far it is every tenth generation."""
    checkpoint.save(state.to_arrays())
    if state.generations % 10 == 0:
        log.info(
            "%s @ %.3g bits: generation %d, %d of %d evaluations, calibration NLL %.5f",
            method, budget, state.generations, sum(state.evaluations_per_stage), evaluations,
            state.value,
        )  # fmt: skip


def budget_metrics(budget: float, facts: dict[str, Any]) -> dict[str, Any]:
    """One budget's flat metrics: its :data:`FACTS` under ``<budget>/``."""
    return {f"{float(budget)}/{k}": facts[k] for k in FACTS if k in facts}
