"""Isolated-metric baselines: LIM and ZD by hand, and every baseline within budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from impq.baselines import BASELINES, BaselineInputs, get_baseline, parse_baseline
from impq.baselines.lim import lim_scores
from impq.baselines.zd import zd_fraction, zd_scores
from impq.estimate.result import ShapleyResult
from impq.models import block_linears, block_param_counts
from impq.models.tiny import TINY_ARCHITECTURES, tiny_model
from impq.solve.problem import BitProblem


class _Blocks(nn.Module):
    def __init__(self, mats: list[torch.Tensor]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(2, 2, bias=False) for _ in mats)
        for layer, mat in zip(self.layers, mats, strict=True):
            layer.weight.data.copy_(mat)


class _Out:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class _ToyLM(nn.Module):
    """Embedding, then blocks y = W x at model.layers (declared in its config)."""

    def __init__(self, emb: torch.Tensor, mats: list[torch.Tensor]) -> None:
        super().__init__()
        layout = {"blocks": "model.layers", "linears": ["*"]}
        self.config = type("Cfg", (), {"model_type": "toy", "impq_layout": layout})()
        self.emb = nn.Embedding.from_pretrained(emb)
        self.model = _Blocks(mats)

    def forward(self, ids: torch.Tensor) -> _Out:
        h = self.emb(ids)
        for layer in self.model.layers:
            h = layer(h)
        return _Out(h)


def test_lim_matches_hand_computation() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rot90 = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # cos = 0 for every token
    scale = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # cos = 1
    shear = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    ids = torch.tensor([[0, 1, 2], [2, 2, 0]])
    model = _ToyLM(emb, [rot90, scale, shear])

    # by hand: block 2 sees rot90(e) for e in [e0, e1, e0+e1] = [(0,1), (-1,0), (-1,1)];
    # shear maps them to (1,1), (-1,0), (0,1): cosines 1/sqrt2, 1, 1/sqrt2.
    c = 1 / np.sqrt(2)
    per_token = {0: c, 1: 1.0, 2: c}
    block2 = np.mean([per_token[int(t)] for t in ids.flatten()])
    expected = -np.array([0.0, 1.0, block2])
    np.testing.assert_allclose(lim_scores(model, ids, batch_size=1), expected, atol=1e-6)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_lim_agrees_with_output_hidden_states(arch: str) -> None:
    model = tiny_model(arch, num_layers=3)
    ids = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    hidden = model(ids, output_hidden_states=True).hidden_states
    # hidden_states[i] enters block i; the last entry is after the final norm: skip it
    by_hand = [
        -torch.nn.functional.cosine_similarity(hidden[i], hidden[i + 1], dim=-1).mean().item()
        for i in range(2)
    ]
    np.testing.assert_allclose(lim_scores(model, ids, batch_size=2)[:2], by_hand, atol=1e-5)


def test_zd_fraction_by_hand() -> None:
    # mean 0, population std 1: only the two +-2 entries have |z| > 1
    assert zd_fraction([torch.tensor([-2.0, 0, 0, 0, 0, 0, 0, 2.0])]) == 0.25
    # pooled over tensors: [0, 0, 0, 4] -> mean 1, std sqrt(3); |z| = 1/sqrt3 x3, sqrt3
    assert zd_fraction([torch.zeros(3), torch.tensor([4.0])]) == 0.25
    with pytest.raises(ValueError, match="non-constant"):
        zd_fraction([torch.ones(4)])


def test_zd_scores_pool_each_blocks_linears() -> None:
    model = tiny_model("qwen3", num_layers=2)
    for i, zd in enumerate(zd_scores(model)):
        w = np.concatenate(
            [m.weight.detach().numpy().ravel() for m in block_linears(model, i).values()]
        ).astype(np.float64)
        z = (w - w.mean()) / w.std()
        assert zd == pytest.approx(np.mean(np.abs(z) > 1))
    # as published, smaller ZD is more important; the tuned variant has the other sign
    published = get_baseline("zd").scores(BaselineInputs(model=model), 2)
    np.testing.assert_allclose(published, -zd_scores(model))
    tuned = get_baseline("zd-tuned").scores(BaselineInputs(model=model), 2)
    np.testing.assert_allclose(tuned, zd_scores(model))


def test_published_zd_keeps_bits_on_the_lowest_zd_blocks() -> None:
    model = tiny_model("llama", num_layers=6)
    zd = zd_scores(model)
    problem = _problem(2.67, block_param_counts(model))  # room for about two blocks at 4 bits
    for name, sign in (("zd", -1.0), ("zd-tuned", 1.0)):
        baseline = get_baseline(name)
        bits = baseline.assign(baseline.scores(BaselineInputs(model=model), 6), problem)
        high = [i for i, b in bits.items() if b == 4]
        assert high and set(high) == set(np.argsort(-sign * zd, kind="stable")[: len(high)])


def _problem(budget: float, params: list[int] | None = None) -> BitProblem:
    params = params or [4096, 8192, 4096, 12288, 4096, 8192]
    n = len(params)
    return BitProblem.build(np.zeros(n), np.zeros((n, n)), params, budget, group_size=64)


def _shapley(n: int) -> ShapleyResult:
    values = np.array([0.5, 0.1, 0.9, 0.05, 0.3, 0.2])[:n]
    return ShapleyResult(
        values, np.zeros(n), np.zeros((n, n)), np.zeros((n, n)), np.full(n, 4096), {}
    )


def _inputs(seed: int = 0) -> BaselineInputs:
    model = tiny_model("llama", num_layers=6)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    return BaselineInputs(model=model, calibration=ids, shapley=_shapley(6), seed=seed)


@pytest.mark.parametrize("budget", [2.0, 2.5, 3.0, 3.5, 4.0])
def test_every_baseline_respects_the_budget(budget: float) -> None:
    inputs = _inputs()
    params = block_param_counts(inputs.model)  # type: ignore[arg-type]
    problem = _problem(budget, params)
    for name in BASELINES:
        baseline = get_baseline(name)
        bits = baseline.assign(baseline.scores(inputs, 6), problem)
        choice = problem.choice(bits)
        assert problem.stored_bytes(choice) <= problem.budget_bytes, name
        assert set(bits.values()) <= {2, 4}


def test_uniform_is_the_highest_single_precision_that_fits() -> None:
    uniform = get_baseline("uniform")
    for budget, want in ((2.0, 2), (3.0, 2), (3.99, 2), (4.0, 4)):
        bits = uniform.assign(np.zeros(6), _problem(budget))
        assert set(bits.values()) == {want}, budget


def test_shapley_gives_bits_to_the_largest_values() -> None:
    baseline = get_baseline("shapley")
    scores = baseline.scores(BaselineInputs(shapley=_shapley(6)), 6)
    # equal blocks, room for two at 4 bits: the two largest values (blocks 2, 0)
    bits = baseline.assign(scores, _problem(2.67, [4096] * 6))
    assert [b for b, v in bits.items() if v == 4] == [0, 2]


def test_random_is_seeded() -> None:
    baseline = get_baseline("random")
    a, b, c = (baseline.scores(BaselineInputs(seed=s), 12) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a) == list(range(12))


def test_random_replicates_are_named_with_their_index() -> None:
    assert parse_baseline("random-2") == ("random", 2)
    assert parse_baseline("zd-tuned") == ("zd-tuned", None)
    assert get_baseline("random-7").name == "random"
    with pytest.raises(ValueError, match=r"seeded ones also as <name>-<k>: \['random-0'\]"):
        parse_baseline("lim-1")  # LIM does not depend on a seed
    with pytest.raises(ValueError, match="unknown baseline"):
        parse_baseline("random-x")


def test_missing_inputs_and_unknown_names_are_errors() -> None:
    with pytest.raises(ValueError, match=r"'lim' needs \['calibration', 'model'\]"):
        get_baseline("lim").scores(BaselineInputs(), 4)
    with pytest.raises(ValueError, match="choose from"):
        get_baseline("hawq")
