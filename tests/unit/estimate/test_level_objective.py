"""LevelObjective: the two-level form exactly, the artifact round trip, input errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from impq.estimate import LevelObjective
from impq.solve.synthetic import synthetic_level_objective, synthetic_shapley


def test_two_level_form_is_exact() -> None:
    r = synthetic_shapley(5, seed=2)
    o = LevelObjective.from_shapley(r)
    k = r.interactions
    a = r.values - (k.sum(axis=1) - np.diag(k))
    np.testing.assert_allclose(o.cost[:, 1], a + np.diag(k), rtol=1e-13)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_array_equal(o.pair[:, 1, :, 1][off], 2 * k[off])
    np.testing.assert_array_equal(o.pair_se[:, 1, :, 1][off], 2 * r.interactions_se[off])
    np.testing.assert_array_equal(o.self_interaction, np.diag(k))
    np.testing.assert_array_equal(o.values[:, 0], r.values)
    assert o.ladder == (4, 2) and o.n_steps == 1 and o.meta == r.meta


def test_save_load_round_trip_is_byte_stable(tmp_path: Path) -> None:
    for o in (
        synthetic_level_objective(4, seed=1),
        LevelObjective.from_shapley(synthetic_shapley(3)),
    ):
        path = o.save(tmp_path / "a.npz")
        back = LevelObjective.load(path)
        for name in ("cost", "pair", "values", "values_se", "pair_se", "block_params"):
            np.testing.assert_array_equal(getattr(back, name), getattr(o, name))
        assert back.ladder == o.ladder and back.meta == o.meta
        if o.self_interaction is None:
            assert back.self_interaction is None
        else:
            np.testing.assert_array_equal(back.self_interaction, o.self_interaction)
        assert back.save(tmp_path / "b.npz").read_bytes() == path.read_bytes()
    synthetic_shapley(3).save(tmp_path / "old.npz")
    with pytest.raises(ValueError, match="not a LevelObjective"):
        LevelObjective.load(tmp_path / "old.npz")
    with pytest.raises(FileNotFoundError, match="run `impq interactions`"):
        LevelObjective.load(tmp_path / "missing.npz")


def test_bad_objectives_say_what_is_wrong() -> None:
    o = synthetic_level_objective(3, (4, 3, 2), seed=0)
    with pytest.raises(ValueError, match="strictly descending"):
        replace(o, ladder=(2, 3, 4))
    with pytest.raises(ValueError, match=r"cost has shape \(3, 4\), expected \(3, 3\)"):
        replace(o, cost=np.zeros((3, 4)))
    cost = o.cost.copy()
    cost[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"cost is NaN or infinite for blocks \[1\]"):
        replace(o, cost=cost)
    cost = o.cost.copy()
    cost[0, 0] = 1.0
    with pytest.raises(ValueError, match=r"cost\[:, 0\] must be 0"):
        replace(o, cost=cost)
    pair = o.pair.copy()
    pair[0, 1, 0, 2] = 1.0
    with pytest.raises(ValueError, match="zero where i == j"):
        replace(o, pair=pair)
    with pytest.raises(ValueError, match="only a two-level ladder"):
        replace(o, self_interaction=np.zeros(3))
    with pytest.raises(ValueError, match=r"phi .* blocks \[2\]"):
        LevelObjective.from_two_level(np.array([1.0, 1.0, np.nan]), np.zeros((3, 3)), [64] * 3)
    with pytest.raises(ValueError, match=r"values in 0\.\.2"):
        o.predict(np.array([0, 3, 1]))
