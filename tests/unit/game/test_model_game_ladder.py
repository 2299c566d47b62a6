"""The model game over a ladder of precisions: values by level, prefix reuse on ladder walks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from impq.estimate import PermutationSampling, walks_from_samples
from impq.eval import batch_nll
from impq.game import ModelGame
from impq.models import block_linears, decoder_blocks
from impq.models.tiny import tiny_model


def _rtn(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Round-to-nearest per output row at ``bits``: a quantizer at any precision."""
    top = 2**bits - 1
    lo, hi = weight.amin(dim=1, keepdim=True), weight.amax(dim=1, keepdim=True)
    scale = (hi - lo).clamp_min(1e-8) / top
    return (((weight - lo) / scale).round().clamp(0, top) * scale + lo).to(weight.dtype)


def _ids(n: int, seqlen: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(0))


def _plain_nll(model: torch.nn.Module, ids: torch.Tensor, bits: list[int]) -> float:
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for i in range(len(decoder_blocks(ref))):
            for lin in block_linears(ref, i).values():
                lin.weight.data = _rtn(lin.weight.data, bits[i])
    return batch_nll(ref, ids).sum().item() / (ids.shape[0] * (ids.shape[1] - 1))


def test_a_level_vector_installs_each_blocks_rung() -> None:
    model = tiny_model("llama", num_layers=4, seed=1)
    ids, ladder = _ids(2, 24), (8, 4, 3, 2)
    # rows 4-6 share a prefix pattern a boolean key would confuse (1 and 2 are both "low")
    levels = np.array([[0, 1, 2, 3], [3, 3, 0, 1], [2, 0, 3, 2], [1, 2, 0, 0], [2, 1, 0, 0]])
    with ModelGame(model, ids, _rtn, ladder=ladder, progress=False) as game:
        assert game.n_levels == 4 and (game.high_bits, game.low_bits) == (8, 2)
        values = game(levels)
        with pytest.raises(ValueError, match="value 4"):
            game(np.array([[0, 4, 0, 0]]))
    for row, value in zip(levels, values, strict=True):
        expected = _plain_nll(model, ids, [ladder[k] for k in row])
        assert value == pytest.approx(expected, rel=1e-5)


def test_the_two_level_game_is_a_ladder_game_over_its_two_rungs() -> None:
    model = tiny_model("llama", num_layers=5, seed=2)
    ids = _ids(2, 16)
    coalitions = np.random.default_rng(0).random((8, 5)) < 0.5
    with ModelGame(model, ids, _rtn, progress=False) as pair:
        assert pair.ladder == (4, 2) and pair.n_levels == 2
        as_bools = pair(coalitions)
        as_levels = pair(coalitions.astype(np.int64))
        fingerprint = pair.fingerprint()
    with ModelGame(model, ids, _rtn, ladder=(4, 3, 2), progress=False) as three:
        outer = three(coalitions.astype(np.int64) * 2)  # levels 0 and 2: 4 and 2 bits
        assert three.fingerprint() != fingerprint
    assert as_bools.tobytes() == as_levels.tobytes() == outer.tobytes()


def test_a_ladder_walk_reuses_prefixes() -> None:
    model = tiny_model("llama", num_layers=6)
    with ModelGame(model, _ids(2, 16), _rtn, ladder=(4, 3, 2), progress=False) as game:
        sampler = PermutationSampling()
        samples = sampler.sample(game, sampler.budget_for(6, 6, 2), 0)
        spent, evaluations = game.n_block_evaluations, game.n_evaluations
    walks = walks_from_samples(samples)
    assert walks.ladder == (4, 3, 2) and evaluations == 2 + 6 * (6 * 2 - 1)
    assert spent < 0.65 * evaluations * 6  # a full forward per evaluation costs 6 blocks
