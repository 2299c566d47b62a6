"""The evopress and verify params sections: stage lists are checked at load time."""

from __future__ import annotations

import pytest

from impq.config import ConfigError
from impq.pipeline.params import parse_params


def _evopress(**section: object) -> object:
    return parse_params({"model": {"source": "x"}, "evopress": section}).evopress


def test_defaults_and_a_valid_schedule() -> None:
    default = _evopress()
    assert default.survivors[-1] == 1 and default.sequences[-1] is None  # type: ignore[attr-defined]
    ok = _evopress(offspring=32, survivors=[16, 4, 1], sequences=[1, 4, None])
    assert ok.sequences == [1, 4, None]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"survivors": [4, 1], "sequences": [None]}, "one entry per stage"),
        ({"survivors": [4, 2], "sequences": [2, None]}, "keeps 1 survivor"),
        ({"survivors": [4, 1], "sequences": [2, 8]}, "keeps 1 survivor"),
        ({"survivors": [2, 4, 1], "sequences": [1, 2, None]}, "non-increasing"),
        ({"survivors": [4, 2, 1], "sequences": [4, 2, None]}, "growing"),
        ({"survivors": [4, 1], "sequences": [None, None]}, "growing"),
        ({"offspring": 2, "survivors": [4, 1]}, "exceeds offspring"),
        ({"max_evaluations": 0}, "greater than 0"),
    ],
)
def test_bad_schedules_name_what_is_wrong(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _evopress(**section)


def test_verify_section() -> None:
    params = parse_params({"model": {"source": "x"}, "verify": {"max_evaluations": 5}})
    assert params.verify.max_evaluations == 5 and params.verify.n_samples is None
    with pytest.raises(ConfigError, match=r"verify\.budget: unknown key"):
        parse_params({"model": {"source": "x"}, "verify": {"budget": 5}})


def test_seeded_section_checks_its_schedule_as_evopress_does() -> None:
    params = parse_params({"model": {"source": "x"}})
    assert params.seeded.max_evaluations == 256 and params.seeded.sequences[-1] is None
    ok = parse_params(
        {"model": {"source": "x"}, "seeded": {"max_evaluations": 40, "final": 0}}
    ).seeded
    assert ok.max_evaluations == 40 and ok.final == 0
    with pytest.raises(ConfigError, match="keeps 1 survivor"):
        parse_params({"model": {"source": "x"}, "seeded": {"survivors": [4, 2]}})
    with pytest.raises(ConfigError, match=r"seeded\.initial: unknown key"):
        parse_params({"model": {"source": "x"}, "seeded": {"initial": 4}})
