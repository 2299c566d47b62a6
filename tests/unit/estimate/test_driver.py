"""The one sampling driver: chunk order, stopping, lost chunks, checkpoints; and both the
estimators and the spqe stage sample through it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from impq.artifacts import write_tensors
from impq.config import parse_params
from impq.estimate import Checkpoint, PermutationSampling, driver, permutation
from impq.estimate.driver import ChunksLostError, drive_walks
from impq.estimate.permutation import seeded_permutations
from impq.game import QuadraticGame
from impq.models.tiny import tiny_model
from impq.pipeline import spqe

N, WALKS = 5, 40


def _rtn(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-to-nearest per output row at ``bits``: a quantizer at any precision."""
    top = 2**bits - 1
    lo, hi = weight.amin(dim=1, keepdim=True), weight.amax(dim=1, keepdim=True)
    scale = (hi - lo).clamp_min(1e-8) / top
    return (((weight - lo) / scale).round().clamp(0, top) * scale + lo).to(weight.dtype)


@dataclass(frozen=True)
class _Outcome:
    indices: np.ndarray
    walks: np.ndarray


def _setup(tolerance: float | None = None) -> tuple[QuadraticGame, PermutationSampling, Any]:
    game = QuadraticGame.random(N, np.random.default_rng(0))
    sampler = PermutationSampling(tolerance=tolerance)
    orders = seeded_permutations(7, range(WALKS), N)
    return game, sampler, orders


def _ends(game: QuadraticGame) -> Any:
    return lambda: game(np.array([np.zeros(N, bool), np.ones(N, bool)]))


def _mapper(
    game: QuadraticGame, sampler: PermutationSampling, orders: np.ndarray, reverse: bool = False
) -> Any:
    """A map that computes chunks in reverse order when asked (workers finishing late)."""
    started: list[np.ndarray] = []

    def run(chunks: list[np.ndarray]) -> Iterator[_Outcome]:
        for indices in reversed(chunks) if reverse else chunks:
            started.append(indices)
            yield _Outcome(indices, sampler.walk(game, orders[indices]))

    run.started = started  # type: ignore[attr-defined]
    return run


def test_chunks_in_any_order_give_the_one_by_one_samples() -> None:
    game, sampler, orders = _setup()
    steps = sampler.evaluations_per_permutation(N)
    one = drive_walks(orders, steps, _ends(game), _mapper(game, sampler, orders))
    late = drive_walks(
        orders, steps, _ends(game), _mapper(game, sampler, orders, reverse=True), chunk_size=7
    )
    for key in one.samples:
        np.testing.assert_array_equal(one.samples[key], late.samples[key])
    assert len(one.samples["walks"]) == WALKS


def test_a_tolerance_stop_is_where_the_one_by_one_run_stops() -> None:
    game, sampler, orders = _setup(tolerance=0.15)
    steps = sampler.evaluations_per_permutation(N)
    one = drive_walks(
        orders,
        steps,
        _ends(game),
        _mapper(game, sampler, orders),
        stopping_point=sampler.stopping_point,
    )
    stop = len(one.samples["walks"])
    assert 10 <= stop < WALKS
    assert sampler._max_se(orders[:stop], one.samples["walks"], one.samples["endpoints"]) < 0.15
    chunked = _mapper(game, sampler, orders, reverse=True)
    late = drive_walks(
        orders,
        steps,
        _ends(game),
        chunked,
        chunk_size=6,
        stopping_point=sampler.stopping_point,
    )
    np.testing.assert_array_equal(late.samples["walks"], one.samples["walks"])


def test_a_stop_closes_the_map_so_chunks_not_started_never_run() -> None:
    game, sampler, orders = _setup(tolerance=0.15)
    run = _mapper(game, sampler, orders)
    out = drive_walks(
        orders,
        sampler.evaluations_per_permutation(N),
        _ends(game),
        run,
        chunk_size=2,
        stopping_point=sampler.stopping_point,
    )
    started = sum(len(c) for c in run.started)
    assert len(out.samples["walks"]) <= started < len(out.samples["walks"]) + 2


def test_a_lost_chunk_keeps_the_others_and_a_rerun_fills_it_in(tmp_path: Path) -> None:
    game, sampler, orders = _setup()
    steps = sampler.evaluations_per_permutation(N)
    checkpoint = Checkpoint(tmp_path / "c.npz", "k")

    def failing(chunks: list[np.ndarray]) -> Iterator[_Outcome | BaseException]:
        for i, indices in enumerate(chunks):
            yield (
                RuntimeError("worker died")
                if i == 1
                else _Outcome(indices, sampler.walk(game, orders[indices]))
            )

    with pytest.raises(ChunksLostError, match=r"1 chunk.*worker died"):
        drive_walks(orders, steps, _ends(game), failing, chunk_size=8, checkpoint=checkpoint)
    saved = checkpoint.load()
    assert saved is not None and len(saved["indices"]) == WALKS - 8
    before = game.n_evaluations
    rerun = drive_walks(
        orders,
        steps,
        _ends(game),
        _mapper(game, sampler, orders),
        chunk_size=8,
        checkpoint=checkpoint,
    )
    assert game.n_evaluations - before == 8 * steps  # the lost chunk only, no endpoints
    assert rerun.resumed == WALKS - 8 and not rerun.endpoints_computed
    fresh = drive_walks(orders, steps, _ends(game), _mapper(game, sampler, orders))
    np.testing.assert_array_equal(rerun.samples["walks"], fresh.samples["walks"])


def test_a_checkpoint_of_other_walks_starts_over(tmp_path: Path, caplog) -> None:
    game, sampler, orders = _setup()
    steps = sampler.evaluations_per_permutation(N)
    checkpoint = Checkpoint(tmp_path / "c.npz", "k")
    other = seeded_permutations(8, range(WALKS), N)  # another seed
    checkpoint.save({"permutations": other[:3], "walks": np.zeros((3, steps)), "endpoints": [0, 1]})
    out = drive_walks(
        orders, steps, _ends(game), _mapper(game, sampler, orders), checkpoint=checkpoint
    )
    assert out.resumed == 0 and out.endpoints_computed
    assert "does not match this run" in caplog.text


def test_estimators_sample_through_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = driver.drive_walks

    def spy(*args: Any, **kwargs: Any) -> driver.DriverRun:
        run = real(*args, **kwargs)
        calls.append(len(run.samples["walks"]))
        return run

    monkeypatch.setattr(permutation, "drive_walks", spy)
    game = QuadraticGame.random(N, np.random.default_rng(0))
    samples = PermutationSampling().sample(game, PermutationSampling().budget_for(N, 12), 0)
    assert calls == [12] == [len(samples["walks"])]


def test_the_spqe_stage_samples_every_walk_through_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_model("llama", num_layers=3, seed=0).save_pretrained(tmp_path / "model")
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    write_tensors(tmp_path / "artifacts/data/calibration.safetensors", {"input_ids": ids}, {})
    params = parse_params(
        {
            "model": {"source": str(tmp_path / "model"), "device": "cpu"},
            "spqe": {"permutations": 6, "group_size": 16},
            "eval": {"methods": ["shapley"]},
            "paths": {"artifacts": str(tmp_path / "artifacts"), "metrics": str(tmp_path / "m")},
        }
    )
    # three rungs through a quantizer of any precision (the backends here store 2 and 4)
    ladder = params.spqe.model_copy(update={"ladder": [4, 3, 2]})
    params = params.model_copy(update={"spqe": ladder})
    monkeypatch.setattr(spqe, "weight_quantizer", lambda backend, group_size: _rtn)
    through: list[int] = []
    real = driver.drive_walks

    def spy(*args: Any, **kwargs: Any) -> driver.DriverRun:
        inner = args[3]

        def counting(chunks: list[np.ndarray]) -> Iterator[Any]:
            for outcome in inner(chunks):
                through.extend(np.asarray(outcome.indices).tolist())
                yield outcome

        return real(*args[:3], counting, *args[4:], **kwargs)

    monkeypatch.setattr(spqe, "drive_walks", spy)
    spqe.run(params, progress=False)
    samples, _, _, provenance = spqe.load_samples(params)
    assert sorted(through) == list(range(6)) == list(range(len(samples["walks"])))
    assert provenance["ladder"] == [4, 3, 2] and samples["ladder"].tolist() == [4, 3, 2]
    assert samples["walks"].shape == (6, 3 * 2 - 1)
