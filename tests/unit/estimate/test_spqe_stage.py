"""The spqe and interactions stages in-process on a tiny saved model: artifacts, metrics,
walk kinds, every method's objective, the paper form's identity on real walks, and a
change of an assembly option that samples nothing again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from impq.artifacts import read_json, write_tensors
from impq.backends import UnsupportedError
from impq.config import ConfigError, Params, SpqeConfig
from impq.estimate import (
    LevelObjective,
    PermutationSampling,
    PermutationSamplingSII,
    ShapleyResult,
    all_coalitions,
)
from impq.models.tiny import tiny_model
from impq.pipeline import interactions, spqe
from impq.pipeline.params import parse_params
from impq.solve import BitProblem

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def _params(
    root: Path, model_dir: Path, methods: list[str] | None = None, **spqe_cfg: object
) -> Params:
    ids = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(0))
    write_tensors(root / "artifacts/data/calibration.safetensors", {"input_ids": ids}, {})
    return parse_params(
        {
            "model": {"source": str(model_dir), "device": "cpu"},
            "spqe": {"permutations": 12, "group_size": 16, **spqe_cfg},
            "eval": {"methods": methods or ["impq", "surrogate", "shapley"]},
            "paths": {"artifacts": str(root / "artifacts"), "metrics": str(root / "metrics")},
        }
    )


@pytest.mark.parametrize(
    ("walks", "source", "objectives"),
    [
        ("prefix", "covariance", ["impq", "surrogate"]),
        ("sii", "shapley-interaction", ["impq", "sii", "surrogate"]),
    ],
)
def test_stage_writes_result_marginals_objectives_and_flat_metrics(
    tmp_path: Path, model_dir: Path, walks: str, source: str, objectives: list[str]
) -> None:
    params = _params(tmp_path, model_dir, walks=walks, n_samples=2)
    written = _both(params)
    assert written == [
        spqe.shapley_path(params),
        spqe.marginals_path(params),
        *(interactions.objective_path(params, m) for m in objectives),
        spqe.metrics_path(params),
    ]
    result = ShapleyResult.load(written[0])
    assert result.meta["interaction_source"] == source
    for m in objectives:
        objective = LevelObjective.load(interactions.objective_path(params, m))
        assert objective.meta["objective"] == m
        np.testing.assert_array_equal(objective.block_params, result.block_params)
    assert result.meta["calibration_shape"] == [2, 24]
    assert result.block_params.tolist() == [2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128] * 4
    marginals = np.load(written[1])
    assert marginals.shape == (12, 4)
    np.testing.assert_allclose(result.values, marginals.mean(axis=0))
    metrics = read_json(written[-1])
    assert all(isinstance(v, int | float) for v in metrics.values())
    assert metrics["surrogate_cv_r2"] <= 1.0 and metrics["additive_cv_r2"] <= 1.0
    assert ("sii_pairs_kept" in metrics) == (walks == "sii")
    per_perm = 3 if walks == "prefix" else 6
    assert metrics["evaluations"] == metrics["evaluations_this_run"] == 2 + 12 * per_perm
    assert not spqe.checkpoint_path(params).exists()
    with np.load(spqe.samples_path(params)) as data:  # the format before spqe.walks existed
        assert set(data.files) == {
            "permutations", "walks", "endpoints", "max_permutations", "block_params",
            "estimator", "provenance",
        }  # fmt: skip
        assert str(data["estimator"]) == ("permutation" if walks == "prefix" else "permutation-sii")


def test_paper_form_on_real_walks_is_the_mean_variance_rule(
    tmp_path: Path, model_dir: Path
) -> None:
    params = _params(tmp_path, model_dir, alpha=0.3)
    _both(params)
    marginals = np.load(spqe.marginals_path(params))
    c = np.cov(marginals, rowvar=False)
    # marginals of a permutation sum to v(N) - v(∅): every row of C sums to zero
    np.testing.assert_allclose(marginals.sum(axis=1), marginals.sum(axis=1)[0], rtol=1e-12)
    np.testing.assert_allclose(c.sum(axis=1), 0.0, atol=1e-12 * np.abs(c).max())
    objective = LevelObjective.load(interactions.objective_path(params, "impq"))
    problem = BitProblem.from_objective(objective, 3.0, group_size=16)
    phi = objective.values[:, 0]
    np.testing.assert_allclose(problem.linear, phi + 0.7 * np.diag(c), rtol=1e-10)
    s = all_coalitions(4)
    x = s.astype(np.float64)
    mean_variance = x @ phi + x @ np.diag(c) + 0.7 * np.var(marginals @ x.T, 0, ddof=1)
    np.testing.assert_allclose(
        problem.objective((~s).astype(np.int64)), mean_variance, rtol=1e-10, atol=1e-12
    )
    assert np.abs(np.diag(c)).min() > 0  # real variation: the identity is not 0 = 0


def test_same_params_give_the_same_bytes(tmp_path: Path, model_dir: Path) -> None:
    a = _both(pa := _params(tmp_path / "a", model_dir))
    b = _both(pb := _params(tmp_path / "b", model_dir))
    for x, y in zip(a[:-1], b[:-1], strict=True):  # the metrics hold timings
        assert x.read_bytes() == y.read_bytes()
    assert spqe.samples_path(pa).read_bytes() == spqe.samples_path(pb).read_bytes()


def test_another_alpha_reassembles_the_same_samples(tmp_path: Path, model_dir: Path) -> None:
    first = _params(tmp_path / "a", model_dir, alpha=0.5)
    _both(first)
    samples = spqe.samples_path(first).read_bytes()
    before = ShapleyResult.load(spqe.shapley_path(first))
    surrogate = interactions.objective_path(first, "surrogate").read_bytes()
    changed = first.model_copy(update={"spqe": first.spqe.model_copy(update={"alpha": 0.1})})
    interactions.run(changed)  # no sampling in between
    assert interactions.objective_path(changed, "surrogate").read_bytes() == surrogate
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
    for method in ("impq", "surrogate"):
        path = interactions.objective_path
        assert path(changed, method).read_bytes() == path(fresh, method).read_bytes()


def test_samples_of_another_walk_kind_are_refused(tmp_path: Path, model_dir: Path) -> None:
    params = _params(tmp_path, model_dir, walks="sii", n_samples=2)
    spqe.run(params, progress=False)
    other = params.model_copy(update={"spqe": params.spqe.model_copy(update={"walks": "prefix"})})
    with pytest.raises(ValueError, match="run `impq spqe` again"):
        interactions.run(other)


def test_switching_to_sii_walks_evaluates_only_the_missing_coalitions(
    tmp_path: Path, model_dir: Path
) -> None:
    params = _params(tmp_path, model_dir, n_samples=2)
    spqe.run(params, progress=False)
    prefix = np.load(spqe.samples_path(params))["walks"]
    sii = params.model_copy(update={"spqe": params.spqe.model_copy(update={"walks": "sii"})})
    spqe.run(sii, progress=False)
    metrics = read_json(spqe.sampling_metrics_path(sii))
    with np.load(spqe.samples_path(sii)) as data:
        perms = data["permutations"]
    known = {tuple(r) for p in perms for r in PermutationSampling().coalitions(p)}
    asked = [tuple(r) for p in perms for r in PermutationSamplingSII().coalitions(p)]
    # each coalition the prefix walks lacked is evaluated once; nothing else is
    assert metrics["evaluations_this_run"] == len(set(asked) - known) > 0
    assert metrics["evaluations_reused"] == 2 + len(asked) - len(set(asked) - known)
    with np.load(spqe.samples_path(sii)) as data:
        assert str(data["estimator"]) == "permutation-sii"
        np.testing.assert_array_equal(data["walks"][:, 1::2], prefix)
    interactions.run(sii)  # the sii objective can now be assembled
    assert interactions.objective_path(sii, "sii").is_file()


def test_a_method_needing_other_walks_is_refused_before_sampling(
    tmp_path: Path, model_dir: Path
) -> None:
    # refused when the params load, before any stage runs
    with pytest.raises(ConfigError, match=r"eval\.methods: .*method 'sii' needs spqe\.walks"):
        _params(tmp_path, model_dir, methods=["impq", "sii"], walks="prefix")
    assert not (tmp_path / "artifacts" / "spqe").exists()


def test_dvc_spqe_stage_tracks_every_spqe_key_but_the_assembly_options() -> None:
    stages = yaml.safe_load((Path(__file__).parents[3] / "dvc.yaml").read_text())["stages"]
    keys = set(SpqeConfig.model_fields)
    sampling = {p.removeprefix("spqe.") for p in stages["spqe"]["params"] if p != "model"}
    assert sampling == keys - spqe.SAMPLING_EXCLUDES
    assembly = {p.removeprefix("spqe.") for p in stages["interactions"]["params"]}
    assert assembly == spqe.ASSEMBLY_OPTIONS | {"walks"}


def test_a_backend_that_cannot_play_is_refused_before_any_work(
    tmp_path: Path, model_dir: Path
) -> None:
    with pytest.raises(ConfigError, match=r"spqe\.backend: 'llamacpp' cannot play the SPQE game"):
        _params(tmp_path, model_dir, backend="llamacpp")
    params = _params(tmp_path, model_dir)
    unchecked = params.model_copy(  # past the params check: the stage refuses it itself
        update={"spqe": params.spqe.model_copy(update={"backend": "llamacpp"})}
    )
    with pytest.raises(UnsupportedError, match=r"set spqe\.backend to one of"):
        spqe.run(unchecked, progress=False)
    assert not spqe.samples_path(params).parent.exists()


def test_cache_size_changes_neither_the_samples_nor_the_checkpoint_key(
    tmp_path: Path, model_dir: Path, spqe_checkpoint_keys: list[str]
) -> None:
    keys = spqe_checkpoint_keys
    runs = [_params(tmp_path / str(mb), model_dir, cache_mb=mb) for mb in (None, 0.0)]
    for params in runs:
        spqe.run(params, progress=False)
    assert keys[0] == keys[1]  # a run resumes whatever its cache size
    assert spqe.samples_path(runs[0]).read_bytes() == spqe.samples_path(runs[1]).read_bytes()
    metrics = [read_json(spqe.sampling_metrics_path(p)) for p in runs]
    assert metrics[1]["block_evaluations_this_run"] > metrics[0]["block_evaluations_this_run"]
    assert metrics[1]["state_cache_mb"] < metrics[0]["state_cache_mb"]
