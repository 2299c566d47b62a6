"""The spqe and interactions stages in-process on a tiny saved model: artifacts, metrics,
interaction kinds, and a change of ``spqe.alpha`` that samples nothing again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from impq.artifacts import read_json, write_tensors
from impq.backends import UnsupportedError
from impq.config import Params, SpqeConfig, parse_params
from impq.estimate import ShapleyResult
from impq.models.tiny import tiny_model
from impq.pipeline import interactions, spqe


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


def _both(params: Params) -> list[Path]:
    """Sampling then assembly, as ``dvc repro`` runs the two stages."""
    sampled = spqe.run(params, progress=False)
    assert sampled == [spqe.samples_path(params), spqe.sampling_metrics_path(params)]
    return interactions.run(params)


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
    written = _both(params)
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
    a = _both(pa := _params(tmp_path / "a", model_dir))
    b = _both(pb := _params(tmp_path / "b", model_dir))
    for x, y in zip(a[:2], b[:2], strict=True):
        assert x.read_bytes() == y.read_bytes()
    assert spqe.samples_path(pa).read_bytes() == spqe.samples_path(pb).read_bytes()


def test_another_alpha_reassembles_the_same_samples(tmp_path: Path, model_dir: Path) -> None:
    first = _params(tmp_path / "a", model_dir, alpha=0.5)
    _both(first)
    samples = spqe.samples_path(first).read_bytes()
    before = ShapleyResult.load(spqe.shapley_path(first))
    changed = first.model_copy(update={"spqe": first.spqe.model_copy(update={"alpha": 0.1})})
    interactions.run(changed)  # no sampling in between
    after = ShapleyResult.load(spqe.shapley_path(changed))
    assert spqe.samples_path(changed).read_bytes() == samples
    assert after.meta["alpha"] == 0.1 and before.meta["alpha"] == 0.5
    np.testing.assert_array_equal(after.values, before.values)
    assert not np.array_equal(after.interactions, before.interactions)
    # the bytes of a run that sampled with alpha 0.1 from the start
    fresh = _params(tmp_path / "b", model_dir, alpha=0.1)
    _both(fresh)
    for path in (spqe.shapley_path, spqe.marginals_path):
        assert path(changed).read_bytes() == path(fresh).read_bytes()


def test_samples_of_another_interaction_kind_are_refused(tmp_path: Path, model_dir: Path) -> None:
    params = _params(tmp_path, model_dir, interactions="shapley-interaction", n_samples=2)
    spqe.run(params, progress=False)
    other = params.model_copy(
        update={"spqe": params.spqe.model_copy(update={"interactions": "covariance"})}
    )
    with pytest.raises(ValueError, match="run `impq spqe` again"):
        interactions.run(other)


def test_assembly_without_samples_names_the_stage(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="impq spqe"):
        interactions.run(_params(tmp_path, model_dir))


def test_dvc_spqe_stage_tracks_every_spqe_key_but_alpha() -> None:
    stages = yaml.safe_load((Path(__file__).parents[3] / "dvc.yaml").read_text())["stages"]
    keys = set(SpqeConfig.model_fields)
    sampling = {p.removeprefix("spqe.") for p in stages["spqe"]["params"] if p != "model"}
    assert sampling == keys - spqe.SAMPLING_EXCLUDES
    assert "spqe.alpha" in stages["interactions"]["params"]


def test_gptq_is_refused_before_any_work(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(UnsupportedError, match="gptq"):
        spqe.run(_params(tmp_path, model_dir, backend="gptq"), progress=False)


def test_cache_size_changes_neither_the_samples_nor_the_checkpoint_key(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys: list[str] = []
    real = spqe.Checkpoint

    def recording(path: Path, key: str) -> object:
        keys.append(key)
        return real(path, key)

    monkeypatch.setattr(spqe, "Checkpoint", recording)
    runs = [_params(tmp_path / str(mb), model_dir, cache_mb=mb) for mb in (None, 0.0)]
    for params in runs:
        spqe.run(params, progress=False)
    assert keys[0] == keys[1]  # a run resumes whatever its cache size
    assert spqe.samples_path(runs[0]).read_bytes() == spqe.samples_path(runs[1]).read_bytes()
    metrics = [read_json(spqe.sampling_metrics_path(p)) for p in runs]
    assert metrics[1]["block_evaluations_this_run"] > metrics[0]["block_evaluations_this_run"]
    assert metrics[1]["state_cache_mb"] < metrics[0]["state_cache_mb"]
