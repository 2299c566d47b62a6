"""ModelGame.subset_values: the NLL on part of the calibration set, reading the prefix cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from impq.game import ModelGame, weight_quantizer
from impq.models.tiny import tiny_model

QUANTIZE = weight_quantizer("quanto", 16)


def _ids(n: int, seqlen: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def test_subset_values_equal_a_game_on_those_sequences_only() -> None:
    model = tiny_model("llama", num_layers=5, seed=2)
    ids = _ids(4, 24)
    configs = np.random.default_rng(0).random((5, 5)) < 0.5
    with ModelGame(model, ids[[1, 3]], QUANTIZE, batch_size=1, progress=False) as small:
        want = small(configs)
    with ModelGame(model, ids, QUANTIZE, batch_size=1, progress=False) as game:
        assert game.n_chunks == 4 and game.chunk_tokens([1, 3]) == 2 * 23
        cold = game.subset_values(configs, [1, 3])
        full = game(configs)  # fills the prefix cache
        warm = game.subset_values(configs, [3, 1])  # now starts from cached prefixes
        every = game.subset_values(configs, range(4))
        assert game.n_evaluations == len(configs)  # subset values are not counted
    np.testing.assert_allclose(cold, want, rtol=1e-6)
    np.testing.assert_allclose(warm, want, rtol=1e-6)
    np.testing.assert_allclose(every, full, rtol=1e-9)


def test_bad_chunks_are_errors() -> None:
    model = tiny_model("llama", num_layers=2)
    with ModelGame(model, _ids(2, 16), QUANTIZE, batch_size=1, progress=False) as game:
        with pytest.raises(ValueError, match="distinct and non-empty"):
            game.subset_values(np.zeros((1, 2), bool), [])
        with pytest.raises(ValueError, match="distinct"):
            game.subset_values(np.zeros((1, 2), bool), [0, 0])
        with pytest.raises(ValueError, match=r"\[2\] do not exist"):
            game.subset_values(np.zeros((1, 2), bool), [0, 2])
