"""``spqe.ladder``: strictly descending precisions; the old two keys follow from it."""

from __future__ import annotations

import pytest

from impq.config import ConfigError, SpqeConfig, parse_params


def test_the_default_ladder_is_the_papers_game() -> None:
    cfg = SpqeConfig()
    assert cfg.ladder == [4, 2] and (cfg.high_bits, cfg.low_bits) == (4, 2)
    longer = SpqeConfig(ladder=[8, 4, 3, 2])
    assert (longer.high_bits, longer.low_bits) == (8, 2)


@pytest.mark.parametrize("ladder", [[4], [2, 4], [4, 4, 2], [4, 3, 3], [2, 0]])
def test_a_ladder_that_is_not_strictly_descending_is_an_error(ladder: list[int]) -> None:
    with pytest.raises(ConfigError, match=r"spqe.ladder .* strictly descending"):
        parse_params({"model": {"source": "org/model"}, "spqe": {"ladder": ladder}})


def test_the_removed_bit_keys_are_errors_that_name_them() -> None:
    with pytest.raises(ConfigError, match="high_bits"):
        parse_params({"model": {"source": "org/model"}, "spqe": {"high_bits": 4}})


def test_sii_walks_over_a_longer_ladder_are_a_params_error() -> None:
    with pytest.raises(ConfigError, match=r"spqe.walks 'sii' needs a two-level spqe.ladder"):
        parse_params(
            {"model": {"source": "org/model"}, "spqe": {"walks": "sii", "ladder": [4, 3, 2]}}
        )
    assert parse_params({"model": {"source": "org/model"}, "spqe": {"walks": "sii"}})
