"""The spqe stage in-process on a tiny saved model: artifacts, metrics, interaction kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from impq.artifacts import read_json, write_tensors
from impq.backends import UnsupportedError
from impq.config import Params, parse_params
from impq.estimate import ShapleyResult
from impq.models.tiny import tiny_model
from impq.pipeline import spqe


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    tiny_model("qwen3", num_layers=4, seed=0).save_pretrained(path)
    return path


def _params(root: Path, model_dir: Path, **spqe_cfg: object) -> Params:
    ids = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(0))
    write_tensors(root / "artifacts/data/calibration.safetensors", {"input_ids": ids}, {})
    return parse_params(
        {
            "model": {"source": str(model_dir), "device": "cpu"},
            "spqe": {"permutations": 12, "group_size": 16, **spqe_cfg},
            "paths": {"artifacts": str(root / "artifacts"), "metrics": str(root / "metrics")},
        }
    )


@pytest.mark.parametrize("kind", ["covariance", "shapley-interaction"])
def test_stage_writes_result_marginals_and_flat_metrics(
    tmp_path: Path, model_dir: Path, kind: str
) -> None:
    params = _params(tmp_path, model_dir, interactions=kind, n_samples=2)
    written = spqe.run(params, progress=False)
    assert written == [
        spqe.shapley_path(params),
        spqe.marginals_path(params),
        spqe.metrics_path(params),
    ]
    result = ShapleyResult.load(written[0])
    assert result.meta["interaction_source"] == kind
    assert result.meta["calibration_shape"] == [2, 24]
    assert result.block_params.tolist() == [2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128] * 4
    marginals = np.load(written[1])
    assert marginals.shape == (12, 4)
    np.testing.assert_allclose(result.values, marginals.mean(axis=0))
    metrics = read_json(written[2])
    assert all(isinstance(v, int | float) for v in metrics.values())
    per_perm = 3 if kind == "covariance" else 6
    assert metrics["evaluations"] == metrics["evaluations_this_run"] == 2 + 12 * per_perm
    assert not spqe.checkpoint_path(params).exists()


def test_same_params_give_the_same_bytes(tmp_path: Path, model_dir: Path) -> None:
    a = spqe.run(_params(tmp_path / "a", model_dir), progress=False)
    b = spqe.run(_params(tmp_path / "b", model_dir), progress=False)
    for x, y in zip(a[:2], b[:2], strict=True):
        assert x.read_bytes() == y.read_bytes()


def test_gptq_is_refused_before_any_work(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(UnsupportedError, match="gptq"):
        spqe.run(_params(tmp_path, model_dir, backend="gptq"), progress=False)
