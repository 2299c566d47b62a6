"""The GPTQ database on a tiny Llama: GPTQModel's sequential blocks, served to the game.

Building the database takes seconds (GPTQModel's import among them): every test that
uses one is slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from impq.artifacts import write_tensors
from impq.backends import UnsupportedError, get_backend
from impq.backends import gptq_database as gdb
from impq.backends.gptq_database import GptqDatabase, build_gptq_database, database_path
from impq.game import ModelGame
from impq.models import block_linears
from impq.models.tiny import tiny_model

pytestmark = pytest.mark.gptq

GROUP = 32
LADDER = (4, 2)
CALIBRATION_BITS = 2


def _ids(model: nn.Module, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (n, 32), generator=generator)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model("llama", num_layers=3)


@pytest.fixture(scope="module")
def database(model: nn.Module) -> GptqDatabase:
    return build_gptq_database(
        model, _ids(model, 4, 0), LADDER, GROUP, CALIBRATION_BITS, progress=False
    )


@pytest.mark.slow
def test_blocks_equal_gptqmodels_sequential_checkpoint_behind_calibration_bits(
    model: nn.Module, database: GptqDatabase
) -> None:
    """Block 2 at 4 bits behind blocks 0 and 1 at the calibration bits is, weight for
    weight, what GPTQModel's sequential quantization of that assignment ships."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shipped = get_backend("gptq").quantize(model, {0: 2, 1: 2, 2: 4}, GROUP, _ids(model, 4, 0))
    for block, bits in ((0, 2), (1, 2), (2, 4)):
        for name, linear in block_linears(shipped, block).items():
            ours = database.weights[block, bits][name]
            assert torch.equal(ours, linear.dequantize_weight().T), (block, name)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    assert not torch.equal(
        database.weights[2, 4]["mlp.up_proj"], database.weights[2, 2]["mlp.up_proj"]
    )


@pytest.mark.slow
def test_game_on_the_database_installs_its_weights_and_loses_more_at_fewer_bits(
    model: nn.Module, database: GptqDatabase
) -> None:
    with ModelGame(model, _ids(model, 2, 1), database.quantizer(model), progress=False) as game:
        high, low = game.value_function(np.array([[False] * 3, [True] * 3]))
        game.install(np.array([False, True, False]))
        installed = block_linears(model, 1)["mlp.down_proj"].weight
        assert torch.equal(installed, database.weights[1, 2]["mlp.down_proj"].float())
    assert np.isfinite([high, low]).all()
    assert low > high


@pytest.mark.slow
def test_quantizer_refuses_what_the_database_does_not_hold(
    model: nn.Module, database: GptqDatabase
) -> None:
    quantize = database.quantizer(model)
    weight = block_linears(model, 0)["self_attn.q_proj"].weight.data
    assert torch.equal(quantize(weight, 4), database.weights[0, 4]["self_attn.q_proj"].float())
    with pytest.raises(ValueError, match="not one of the layout linears"):
        quantize(weight.clone(), 4)
    with pytest.raises(ValueError, match=r"holds \[4, 2\] bits, not 3"):
        quantize(weight, 3)
    with pytest.raises(ValueError, match="another model"):
        database.quantizer(tiny_model("llama", num_layers=3, seed=1))


@pytest.mark.slow
def test_calibration_bits_off_the_ladder_are_held_as_well(model: nn.Module) -> None:
    built = build_gptq_database(model, _ids(model, 2, 0), [4], GROUP, 2, progress=False)
    assert built.bits == (4, 2)
    assert {bits for _, bits in built.weights} == {4, 2}
    assert len(built.seconds) == built.n_blocks == 3


def _refuse(*args: object) -> None:
    raise RuntimeError("rebuilt a database")


@pytest.mark.slow
def test_a_cached_database_is_read_back_identical(
    model: nn.Module, database: GptqDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = database_path(tmp_path, database.key)
    database.save(path)
    monkeypatch.setattr(gdb, "_build", _refuse)
    again = build_gptq_database(
        model, _ids(model, 4, 0), LADDER, GROUP, CALIBRATION_BITS, cache_dir=tmp_path
    )
    assert again.weights.keys() == database.weights.keys()
    for key, linears in database.weights.items():
        assert all(torch.equal(w, again.weights[key][n]) for n, w in linears.items())
    assert (again.ladder, again.calibration_bits, again.group_size, again.seconds) == (
        database.ladder, database.calibration_bits, database.group_size, database.seconds,
    )  # fmt: skip
    assert again.key == database.key and again.model_key == database.model_key
    with pytest.raises(RuntimeError, match="rebuilt"):  # another ladder is another key
        build_gptq_database(model, _ids(model, 4, 0), [4], GROUP, 2, cache_dir=tmp_path)


def test_bad_requests_are_refused_before_any_work(model: nn.Module, tmp_path: Path) -> None:
    ids = _ids(model, 2, 0)
    with pytest.raises(ValueError, match="distinct"):
        build_gptq_database(model, ids, [4, 4], GROUP, 2)
    with pytest.raises(UnsupportedError, match="not 5"):
        build_gptq_database(model, ids, [5, 2], GROUP, 2)
    with pytest.raises(UnsupportedError, match="group size"):
        build_gptq_database(model, ids, [4, 2], 48, 2)
    with pytest.raises(ValueError, match="token ids"):
        build_gptq_database(model, ids[0], [4, 2], GROUP, 2)
    write_tensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {})
    with pytest.raises(ValueError, match="not a GPTQ database"):
        GptqDatabase.load(tmp_path / "other.safetensors")
