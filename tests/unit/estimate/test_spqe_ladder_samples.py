"""The spqe stage's samples name their ladder; samples written before ladders (provenance
with high_bits/low_bits) still load as [high, low] and are reused as the same game."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from impq.artifacts import read_json, write_tensors
from impq.config import parse_params
from impq.estimate.result import write_npz
from impq.models.tiny import tiny_model
from impq.pipeline import spqe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_samples_before_ladders_load_as_two_rungs_and_are_reused(tmp_path: Path) -> None:
    tiny_model("llama", num_layers=3, seed=0).save_pretrained(tmp_path / "model")
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    write_tensors(tmp_path / "artifacts/data/calibration.safetensors", {"input_ids": ids}, {})
    params = parse_params(
        {
            "model": {"source": str(tmp_path / "model"), "device": "cpu"},
            "spqe": {"permutations": 4, "group_size": 16},
            "paths": {"artifacts": str(tmp_path / "artifacts"), "metrics": str(tmp_path / "m")},
        }
    )
    spqe.run(params, progress=False)
    path = spqe.samples_path(params)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    provenance = json.loads(str(arrays["provenance"]))
    assert provenance["ladder"] == [4, 2] and "high_bits" not in provenance

    # the file as it was written before ladders
    old = {k: v for k, v in provenance.items() if k != "ladder"}
    old.update(high_bits=4, low_bits=2)
    arrays["provenance"] = np.array(json.dumps(old))
    with open(path, "wb") as f:
        write_npz(f, arrays)
    samples, _, _, _ = spqe.load_samples(params)
    assert samples["ladder"].tolist() == [4, 2]
    assert spqe.provenance_ladder({"ladder": [8, 4, 3, 2]}) == [8, 4, 3, 2]

    spqe.run(params, progress=False)  # the same game: every coalition is answered
    metrics = read_json(spqe.sampling_metrics_path(params))
    assert metrics["evaluations_this_run"] == 0
    assert metrics["evaluations_reused"] == 2 + 4 * 2
    with np.load(path) as data:
        np.testing.assert_array_equal(data["walks"], arrays["walks"])
