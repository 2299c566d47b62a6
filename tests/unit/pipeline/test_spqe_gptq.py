"""The spqe stage with ``spqe.backend: gptq`` on a tiny saved model: the game plays on the
GPTQ database, kept under the stage's artifacts, and the stages after it read it back.

Every test builds or reads a GPTQ database (GPTQModel's import among the cost): slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from impq.artifacts import read_json, write_tensors
from impq.backends import gptq_database as gdb
from impq.backends.gptq_database import GptqDatabase, database_path
from impq.config import Params
from impq.eval import batch_nll
from impq.models import block_linears, decoder_blocks, load_model
from impq.models.tiny import tiny_model
from impq.pipeline import evopress, spqe
from impq.pipeline.params import parse_params
from impq.pipeline.paths import spqe_database_dir

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread", "no_game_kept"),
    pytest.mark.slow,
    pytest.mark.gptq,
]

LADDER = [4, 2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    tiny_model("llama", num_layers=3, seed=0).save_pretrained(path)
    return path


def _params(root: Path, model_dir: Path, **spqe_cfg: object) -> Params:
    ids = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(0))
    write_tensors(root / "artifacts/data/calibration.safetensors", {"input_ids": ids}, {})
    return parse_params(
        {
            "model": {"source": str(model_dir), "dtype": "float32", "device": "cpu"},
            "spqe": {
                "permutations": 2,
                "backend": "gptq",
                "ladder": LADDER,
                "group_size": 16,
                "calibration_bits": 2,
                "n_samples": 2,
                **spqe_cfg,
            },
            "eval": {"methods": ["impq", "evopress"]},
            "paths": {"artifacts": str(root / "artifacts"), "metrics": str(root / "metrics")},
        }
    )


def _provenance(params: Params) -> dict:
    with np.load(spqe.samples_path(params)) as data:
        return json.loads(str(data["provenance"]))


def _database(params: Params) -> GptqDatabase:
    """The database the samples at ``params`` were walked on."""
    return GptqDatabase.load(
        database_path(spqe_database_dir(params), _provenance(params)["database"])
    )


def _ids() -> torch.Tensor:
    """The calibration sequences the game plays on (``spqe.n_samples`` of them)."""
    return torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(0))[:2]


def _refuse(*args: object) -> None:
    raise RuntimeError("rebuilt the GPTQ database")


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Params:
    """One spqe run on the GPTQ database (calibration bits 2)."""
    params = _params(tmp_path_factory.mktemp("project"), model_dir)
    spqe._WORKER_GAMES.clear()
    spqe.run(params, progress=False)
    spqe._WORKER_GAMES.clear()
    return params


def test_endpoints_are_the_losses_of_models_assembled_from_the_database(played: Params) -> None:
    database = _database(played)
    assert (database.ladder, database.calibration_bits, database.group_size) == ((4, 2), 2, 16)
    with np.load(spqe.samples_path(played)) as data:
        endpoints = data["endpoints"]
    for level, bits in enumerate(LADDER):
        model = load_model(played.model)
        for b in range(len(decoder_blocks(model))):
            for name, linear in block_linears(model, b).items():
                weight = linear.get_parameter("weight")
                weight.data = database.weights[b, bits][name].to(weight.dtype)
        with torch.no_grad():
            loss = batch_nll(model, _ids()).sum().item() / (2 * 23)
        np.testing.assert_allclose(endpoints[level], loss, rtol=1e-5)
    assert endpoints[1] > endpoints[0]


def test_a_rerun_reads_the_kept_database(
    played: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = spqe.samples_path(played).read_bytes()
    spqe.samples_path(played).unlink()  # nothing to answer from: the game is played again
    monkeypatch.setattr(gdb, "_build", _refuse)
    spqe.run(played, progress=False)
    assert spqe.samples_path(played).read_bytes() == samples
    assert read_json(spqe.sampling_metrics_path(played))["evaluations_reused"] == 0
    assert len(list(spqe_database_dir(played).iterdir())) == 1
    kept = spqe_database_dir(played).rename(tmp_path / "kept")
    spqe.samples_path(played).unlink()
    monkeypatch.setattr(spqe, "_WORKER_GAMES", {})
    try:
        with pytest.raises(RuntimeError, match="rebuilt"):  # without it: built again
            spqe.run(played, progress=False)
    finally:
        kept.rename(spqe_database_dir(played))
        spqe.samples_path(played).write_bytes(samples)


def test_evopress_plays_on_the_kept_database(
    played: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gdb, "_build", _refuse)
    written = evopress.run(played)
    assert [p.name for p in written][-1] == "evopress.json" and len(written) > 1
    model = load_model(played.model)
    with_database = evopress.game_inputs_key(model, _database(played).key, _ids())
    assert with_database != evopress.game_inputs_key(model, "", _ids())


def test_other_calibration_bits_are_another_database_and_another_game(
    played: Params, spqe_checkpoint_keys: list[str]
) -> None:
    keys = spqe_checkpoint_keys
    cost = read_json(spqe.sampling_metrics_path(played))["evaluations_all_runs"]
    assert cost > 0
    spqe.run(played, progress=False)  # answered from its own samples
    again = read_json(spqe.sampling_metrics_path(played))
    assert again["evaluations_this_run"] == 0
    assert again["evaluations_all_runs"] == cost  # what the kept samples cost is kept
    before = _provenance(played)
    other = played.model_copy(
        update={"spqe": played.spqe.model_copy(update={"calibration_bits": 4})}
    )
    spqe.run(other, progress=False)
    after = _provenance(other)
    assert read_json(spqe.sampling_metrics_path(other))["evaluations_reused"] == 0
    assert keys[0] != keys[1]  # no checkpoint of one resumes the other
    assert before["database"] != after["database"]
    assert len(list(spqe_database_dir(played).iterdir())) == 2
