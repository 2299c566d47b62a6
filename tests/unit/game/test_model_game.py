"""The cached model game: same NLL as a plain forward, prefix reuse, restore, Shapley check."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from impq.backends import UnsupportedError
from impq.estimate import PermutationSampling, exact_values
from impq.eval import batch_nll
from impq.game import ModelGame, game_backends, weight_quantizer
from impq.models import block_linears, decoder_blocks
from impq.models.tiny import tiny_model

QUANTIZE = weight_quantizer("quanto", 16)


def _ids(n: int, seqlen: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def _plain_nll(model: torch.nn.Module, ids: torch.Tensor, low: np.ndarray) -> float:
    """Mean NLL of a copy of ``model`` re-quantized per block, by a plain forward."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for i in range(len(decoder_blocks(ref))):
            for lin in block_linears(ref, i).values():
                lin.weight.data = QUANTIZE(lin.weight.data, 2 if low[i] else 4)
    return batch_nll(ref, ids).sum().item() / (ids.shape[0] * (ids.shape[1] - 1))


@pytest.mark.parametrize("arch", ["llama", "gemma2", "qwen3"])
def test_cached_values_equal_a_plain_forward(arch: str) -> None:
    model = tiny_model(arch, num_layers=5, seed=1)
    ids = _ids(3, 80)  # longer than gemma2's sliding window of 64
    configs = np.random.default_rng(0).random((6, 5)) < 0.5
    with ModelGame(model, ids, QUANTIZE, batch_size=2, progress=False) as game:
        values = game(configs)
    for config, value in zip(configs, values, strict=True):
        assert value == pytest.approx(_plain_nll(model, ids, config), rel=1e-5)


def test_a_permutation_walk_reuses_prefixes() -> None:
    model = tiny_model("llama", num_layers=8)
    with ModelGame(model, _ids(2, 16), QUANTIZE, progress=False) as game:
        blocks_before = game.n_block_evaluations
        est = PermutationSampling().estimate(game, 2 + 20 * 7, np.random.default_rng(0))
        spent = game.n_block_evaluations - blocks_before
    naive = est.n_evaluations * 8
    assert spent < 0.65 * naive
    assert game.n_evaluations == est.n_evaluations


def test_restore_puts_the_original_weights_back() -> None:
    model = tiny_model("llama", num_layers=3)
    ids = _ids(2, 16)
    before = batch_nll(model, ids)
    originals = [lin.weight for i in range(3) for lin in block_linears(model, i).values()]
    with ModelGame(model, ids, QUANTIZE, progress=False) as game:
        game(np.ones((1, 3), bool))
        assert block_linears(model, 0)["mlp.up_proj"].weight is not originals[6]
    after = [lin.weight for i in range(3) for lin in block_linears(model, i).values()]
    assert all(a is b for a, b in zip(after, originals, strict=True))
    torch.testing.assert_close(batch_nll(model, ids), before, rtol=0, atol=0)


def test_only_data_free_backends_quantize_a_weight_alone() -> None:
    assert game_backends() == ["gptq", "hqq", "quanto"]
    with pytest.raises(UnsupportedError, match="per-block database"):
        weight_quantizer("gptq", 64)
    with pytest.raises(UnsupportedError, match=r"^spqe.backend: 'llamacpp' cannot play the SPQE"):
        weight_quantizer("llamacpp", 64)
    with pytest.raises(ValueError, match="hqq"):
        weight_quantizer("awq", 64)


def test_spqe_ranks_blocks_like_exact_enumeration_at_a_tenth_of_its_budget() -> None:
    model = tiny_model("llama", num_layers=10)
    with ModelGame(model, _ids(4, 32), QUANTIZE, progress=False) as game:
        exact, _, _ = exact_values(game)
        assert game.n_evaluations == 2**10
        assert game.n_block_evaluations < 2.1 * 2**10  # Gray-code order: ~2 blocks each
        budget = 2**10 // 10
        est = PermutationSampling().estimate(game, budget, np.random.default_rng(0))
    assert est.n_evaluations <= budget
    assert spearmanr(est.values, exact).statistic >= 0.9


def test_values_do_not_depend_on_the_cache_route() -> None:
    model = tiny_model("llama", num_layers=6)
    ids = _ids(2, 16)
    configs = np.random.default_rng(1).random((40, 6)) < 0.5
    order = np.random.default_rng(2).permutation(40)
    with ModelGame(model, ids, QUANTIZE, progress=False) as big:
        a = big(configs)
        reused = big.n_block_evaluations
    with ModelGame(model, ids, QUANTIZE, progress=False, cache_mb=0) as small:
        b = np.empty(40)
        b[order] = small(configs[order])
        assert small.n_block_evaluations > reused
    np.testing.assert_array_equal(a, b)


def test_shapley_values_do_not_depend_on_the_state_cache_size() -> None:
    model = tiny_model("llama", num_layers=8)
    ids = _ids(2, 16)
    results, blocks = [], []
    for cache_mb in (None, 0.0):  # default room vs one prefix chain
        with ModelGame(model, ids, QUANTIZE, progress=False, cache_mb=cache_mb) as game:
            results.append(PermutationSampling().estimate(game, 2 + 12 * 7, 0))
            blocks.append(game.n_block_evaluations)
    assert blocks[1] > blocks[0]  # the small cache really recomputed more
    for name in ("values", "values_se", "interactions", "interactions_se", "marginals"):
        np.testing.assert_array_equal(getattr(results[0], name), getattr(results[1], name))


def test_block_counter_counts_evaluations_only() -> None:
    """Exact in any process, a resumed run's included: the self-check is not counted."""
    model = tiny_model("llama", num_layers=6)
    ids = _ids(2, 16)
    with ModelGame(model, ids, QUANTIZE, progress=False) as game:
        assert game.n_block_evaluations == 0
        config = np.zeros(6, bool)
        game(config[None])
        assert game.n_block_evaluations == 6
        config[4] = True
        game(np.stack([config, config]))  # restarts at block 4; the repeat is free
        assert game.n_block_evaluations == 6 + 2
        assert game.n_evaluations == 3
        assert game.seconds["total"] >= game.seconds["blocks"] + game.seconds["head"] > 0


def test_default_cache_holds_three_chains_however_long_the_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("llama", num_layers=5)
    ids = _ids(2, 16)
    state_mb = ids.numel() * model.config.hidden_size * 4 / 2**20
    with ModelGame(model, ids, QUANTIZE, progress=False) as roomy:
        assert roomy.cache_mb == pytest.approx(256.0, abs=state_mb)
    monkeypatch.setattr("impq.game.model.DEFAULT_CACHE_MB", state_mb)  # "long sequences"
    with ModelGame(model, ids, QUANTIZE, progress=False) as tight:
        assert tight.cache_mb == pytest.approx(3 * 5 * state_mb)
    with ModelGame(model, ids, QUANTIZE, progress=False, cache_mb=0) as explicit:
        assert explicit.cache_mb == pytest.approx(5 * state_mb)  # one chain at least


def test_install_puts_a_configuration_s_weights_for_the_model_s_own_forward() -> None:
    model = tiny_model("llama", num_layers=4)
    ids = _ids(2, 16)
    config = np.array([True, False, True, False])
    with ModelGame(model, ids, QUANTIZE, progress=False) as game:
        value = game(config[None])[0]
        game.install(np.zeros(4, bool))
        game.install(config)
        forward = batch_nll(model, ids).sum().item() / (2 * 15)
        with pytest.raises(ValueError, match="one boolean per block"):
            game.install(np.zeros(3, bool))
    assert value == pytest.approx(forward, rel=1e-6)
