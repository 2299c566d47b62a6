"""EvoPress stages on the model game: random subsets per call, the full game last."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impq.game import ModelGame, weight_quantizer
from impq.models import block_param_counts
from impq.models.tiny import tiny_model
from impq.search import evopress
from impq.search.stages import SubsetGame, model_stages
from impq.solve.problem import BitProblem


def _game(n_seq: int = 4) -> ModelGame:
    model = tiny_model("llama", num_layers=6, seed=3)
    ids = torch.randint(0, 256, (n_seq, 20), generator=torch.Generator().manual_seed(0))
    return ModelGame(model, ids, weight_quantizer("quanto", 16), batch_size=1, progress=False)


def test_stages_grow_and_end_with_the_game_itself() -> None:
    with _game() as game:
        stages = model_stages(game, [3, 2, 1], [1, 2, None], np.random.default_rng(0))
        assert [s.survivors for s in stages] == [3, 2, 1]
        assert [s.tokens for s in stages] == [19, 38, 76]
        assert stages[-1].game is game
        subset = stages[0].game
        assert isinstance(subset, SubsetGame)
        config = np.zeros((1, 6), dtype=bool)
        singles = np.array([game.subset_values(config, [c])[0] for c in range(4)])
        draws = np.array([subset(config)[0] for _ in range(12)])
        # each draw is the value on one of the four sequences, and not always the same one
        nearest = np.abs(draws[:, None] - singles[None, :]).min(axis=1)
        assert nearest.max() < 1e-9
        assert len(np.unique(draws.round(9))) > 1
        with pytest.raises(ValueError, match="asks for 5"):
            model_stages(game, [2, 1], [5, None], np.random.default_rng(0))


def test_evopress_on_the_model_game_spends_exactly_what_it_reports() -> None:
    with _game() as game:
        problem = BitProblem.build(
            np.zeros(6), np.zeros((6, 6)), block_param_counts(game.model), 3.0, group_size=16
        )
        stages = model_stages(game, [2, 1], [1, None], np.random.default_rng(0))
        result = evopress(stages, problem, 30, offspring=4, initial=4, seed=0)
        assert result.evaluations <= 30
        assert result.evaluations_per_stage == [stages[0].game.n_evaluations, game.n_evaluations]
        assert result.tokens == 19 * result.evaluations_per_stage[0] + 76 * game.n_evaluations
        assert problem.stored_bytes((~result.coalition).astype(int)) <= problem.budget_bytes
        assert result.value == pytest.approx(game(result.coalition[None])[0])


def test_a_subset_stage_plays_every_rung_of_a_ladder_game() -> None:
    model = tiny_model("llama", num_layers=4, seed=3)
    ids = torch.randint(0, 256, (3, 20), generator=torch.Generator().manual_seed(0))
    quantize = weight_quantizer("hqq", 16)
    with ModelGame(model, ids, quantize, ladder=(4, 3, 2), batch_size=1, progress=False) as game:
        subset = model_stages(game, [2, 1], [1, None], np.random.default_rng(0))[0].game
        assert subset.n_levels == game.n_levels == 3
        levels = np.array([[2, 2, 1, 0]])
        chunk = subset.rng.bit_generator.state  # the draw the next call makes
        value = subset(levels)[0]
        subset.rng.bit_generator.state = chunk
        drawn = np.sort(subset.rng.choice(game.n_chunks, 1, replace=False)).tolist()
        assert value == pytest.approx(game.subset_values(levels, drawn)[0])
