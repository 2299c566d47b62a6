"""GPTQ sweep cells assembled from the SPQE game's database (``backends.calibrated_cells:
database``) on a tiny saved model: the game's model, at the shipped format's bytes.

Every test builds or reads a GPTQ database (GPTQModel's import among the cost): slow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from impq.artifacts import fingerprint, read_tensors, write_tensors
from impq.backends import gptq_database as gdb
from impq.config import Params
from impq.eval import batch_nll
from impq.game import ModelGame
from impq.models import block_linears, load_model
from impq.models.tiny import tiny_model
from impq.pipeline import assembled, baselines, spqe, sweep
from impq.pipeline.params import parse_params
from impq.pipeline.paths import spqe_database_dir
from impq.pipeline.prepare import calibration_path, eval_tokens_path, read_eval_tokens

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread", "no_game_kept"),
    pytest.mark.slow,
    pytest.mark.gptq,
]

LADDER = [4, 2]
CALIBRATION_BITS = 2
N_BLOCKS = 3


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """A project whose gptq cells come from the game's database. The model computes in
    bfloat16, as GPTQModel's models do, and the game plays on every calibration sequence
    (``spqe.n_samples`` null), as sequential GPTQ calibrates on them all."""
    root = tmp_path_factory.mktemp("project")
    tiny_model("llama", num_layers=N_BLOCKS, seed=0).save_pretrained(root / "model")
    params = parse_params(
        {
            "model": {"source": str(root / "model"), "dtype": "bfloat16", "device": "cpu"},
            "data": {"calibration": {"n_samples": 3, "seqlen": 24}},
            "spqe": {
                "permutations": 2,
                "backend": "gptq",
                "ladder": LADDER,
                "group_size": 16,
                "calibration_bits": CALIBRATION_BITS,
            },
            "backends": {"names": ["gptq"], "calibrated_cells": "database"},
            "eval": {
                "seqlen": 24,
                "batch_size": 4,
                "max_windows": 4,
                "methods": ["random-0", "uniform-2"],
            },
            "budgets": [3.0],
            "paths": {k: str(root / k) for k in ("artifacts", "metrics", "plots", "results")},
        }
    )
    ids = torch.randint(0, 256, (1024,), generator=torch.Generator().manual_seed(0))
    write_tensors(eval_tokens_path(params), {"input_ids": ids}, {"fingerprint": fingerprint(ids)})
    write_tensors(calibration_path(params), {"input_ids": ids[:72].view(3, 24)}, {})
    return params


def _sequential(params: Params) -> Params:
    backends = params.backends.model_copy(update={"calibrated_cells": "sequential"})
    return params.model_copy(update={"backends": backends})


def _refuse(*args: object) -> None:
    raise RuntimeError("rebuilt the GPTQ database")


def test_a_cell_at_the_calibration_bits_is_the_sequential_cell(project: Params) -> None:
    """Every block at the calibration bits: each block of the database was calibrated
    behind exactly the blocks the sequential model has in front of it."""
    bits = dict.fromkeys(range(N_BLOCKS), CALIBRATION_BITS)
    assembled, facts = sweep.quantize_one(project, "gptq", bits)
    shipped, shipped_facts = sweep.quantize_one(_sequential(project), "gptq", bits)
    for block in range(N_BLOCKS):
        ours = block_linears(assembled, block)
        for name, linear in block_linears(shipped, block).items():
            weight = ours[name].get_parameter("weight")
            assert torch.equal(weight, linear.dequantize_weight().T.to(weight.dtype)), name
    assert facts["stored_bytes"] == shipped_facts["stored_bytes"]  # the shipped format's
    assert facts["bits_per_weight"] == shipped_facts["bits_per_weight"]
    tokens = read_eval_tokens(project)
    ppl = sweep.evaluate_one(project, assembled, tokens)["ppl"]
    assert ppl == sweep.evaluate_one(project, shipped, tokens)["ppl"]
    other = sweep.quantize_one(project, "gptq", dict.fromkeys(range(N_BLOCKS), 4))[0]
    assert sweep.evaluate_one(project, other, tokens)["ppl"] != ppl


def test_a_mixed_cell_is_the_model_the_game_scores(project: Params) -> None:
    bits = {0: 4, 1: 2, 2: 4}
    cache = sweep.BlockCache(project)
    assembled, facts = sweep.quantize_one(project, "gptq", bits, cache=cache)
    assert facts["blocks_quantized"] == N_BLOCKS  # read from the database
    assert sweep.quantize_one(project, "gptq", bits, cache=cache)[1]["blocks_quantized"] == 0

    model = load_model(project.model)
    ids = read_tensors(calibration_path(project))[0]["input_ids"]
    quantize, key = spqe.game_quantizer(project, model)
    levels = np.array([[LADDER.index(bits[b]) for b in range(N_BLOCKS)]], dtype=np.uint8)
    with ModelGame(model, ids, quantize, LADDER, progress=False, quantizer_key=key) as game:
        value = game.value_function(levels)[0]
        game.install(levels[0])
        theirs = model.state_dict()
        ours = assembled.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), "another model"
    with torch.no_grad():
        nll = batch_nll(assembled, ids).sum().item() / ids[:, 1:].numel()
    np.testing.assert_allclose(nll, value, rtol=1e-6)
    assert not torch.equal(  # not the float model: the database's 2-bit block
        block_linears(assembled, 1)["mlp.up_proj"].weight,
        block_linears(model, 1)["mlp.up_proj"].weight,
    )


def test_a_sweep_after_spqe_reads_the_games_database(
    project: Params, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spqe.run(project, progress=False)
    with np.load(spqe.samples_path(project)) as data:
        played = json.loads(str(data["provenance"]))["database"]
    baselines.run(project)
    monkeypatch.setattr(gdb, "_build", _refuse)
    row = sweep.run_one(project, "gptq", "random-0", 3.0)
    assert row["ppl_finite"] and set(row["bits"].split(",")) == {"2", "4"}
    folder = spqe_database_dir(project)
    assert list(folder.iterdir()) == [gdb.database_path(folder, played)]
    kept = folder.rename(tmp_path / "kept")  # without it, the sweep builds it
    try:
        with pytest.raises(RuntimeError, match="rebuilt"):
            sweep.quantize_one(project, "gptq", {0: 4, 1: 2, 2: 4})
    finally:
        kept.rename(folder)


def test_a_missing_database_is_built_where_the_game_reads_it(
    project: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = spqe_database_dir(project)
    shutil.rmtree(folder, ignore_errors=True)
    sweep.quantize_one(project, "gptq", {0: 4, 1: 2, 2: 4})
    monkeypatch.setattr(gdb, "_build", _refuse)
    key = spqe.game_quantizer(project, load_model(project.model))[1]
    assert list(folder.iterdir()) == [gdb.database_path(folder, key)]


def test_an_assignment_off_the_ladder_is_refused(project: Params) -> None:
    with pytest.raises(ValueError, match=r"\[3\] bits, not on spqe.ladder \[4, 2\]"):
        sweep.quantize_one(project, "gptq", {0: 4, 1: 3, 2: 4})


def test_the_assembled_stage_pairs_the_games_model_with_the_shipped_cell(
    project: Params, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the calibration bits the game's model is the shipped one (ratio 1, exactly); a
    mixed cell is scored on the database beside its sequential cell; a rerun keeps both."""
    shipped = _sequential(project)
    spqe.run(shipped, progress=False)
    baselines.run(shipped)
    rows = {m: sweep.run_one(shipped, "gptq", m, 3.0) for m in shipped.eval.methods}
    assert assembled.cells(shipped) == sweep.combinations(shipped)
    assert assembled.cells(project) == []  # its sweep cells are the database's already

    files = assembled.run(shipped)
    metrics = json.loads(files[1].read_text())
    assert metrics["cells"] == 2
    at_calibration = metrics["gptq/uniform-2/3.0/ratio"]
    assert at_calibration == 1.0 and metrics["gptq/uniform-2/3.0/ratio_ci_low"] == 1.0
    assert metrics["gptq/uniform-2/3.0/ppl_assembled"] == rows["uniform-2"]["ppl"]
    mixed = metrics["gptq/random-0/3.0/ratio"]
    assert mixed != 1.0
    assert metrics["gptq/random-0/3.0/ppl_shipped"] == rows["random-0"]["ppl"]
    low, high = (
        metrics["gptq/random-0/3.0/ratio_ci_low"],
        metrics["gptq/random-0/3.0/ratio_ci_high"],
    )
    assert low <= mixed <= high
    assert "| gptq | 3.00 | random-0 |" in files[0].read_text()

    monkeypatch.setattr(sweep.cells, "quantize_one", _refuse)  # kept: nothing measured again
    assert json.loads(assembled.run(shipped)[1].read_text()) == metrics
