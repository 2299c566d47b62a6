from pathlib import Path

import pytest

from impq.config import ConfigError, Params
from impq.pipeline.params import load_params, parse_params


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_committed_params_load(repo_root: Path) -> None:
    params = load_params(repo_root / "params.yaml")
    assert isinstance(params, Params)
    assert params.model.source == "models/ref-llama-12l"


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  source: x\n  dtyp: float32\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert "model.dtyp: unknown key" in str(err.value)


def test_nested_unknown_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: {source: x}\ndata:\n  calibration: {n_sample: 4}\n")
    with pytest.raises(ConfigError, match=r"data\.calibration\.n_sample: unknown key"):
        load_params(path)


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: {source: x}\neval: {seqlen: many}\n")
    with pytest.raises(ConfigError) as err:
        load_params(path)
    msg = str(err.value)
    assert "eval.seqlen" in msg and "integer" in msg and "'many'" in msg


def test_bad_enum_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: {source: x, dtype: float8}\n")
    with pytest.raises(ConfigError, match=r"model\.dtype"):
        load_params(path)


def test_missing_section_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model: Field required"):
        parse_params({"eval": {}})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(_write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "absent.yaml")


def test_bad_data_root_path(tmp_path: Path) -> None:
    params = parse_params({"model": {"source": "x"}, "data": {"root": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match=r"data\.root: .*nope is not a directory"):
        params.data.resolved_root()


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPQ_DATA_DIR", str(tmp_path))
    params = parse_params({"model": {"source": "x"}})
    assert params.data.resolved_root() == tmp_path
    monkeypatch.delenv("IMPQ_DATA_DIR")
    assert params.data.resolved_root() is None


def test_budgets_must_be_decimals_and_in_range() -> None:
    with pytest.raises(ConfigError, match=r"budgets: .*write budget 3 as 3\.0"):
        parse_params({"model": {"source": "x"}, "budgets": [2.5, 3]})
    with pytest.raises(ConfigError, match=r"budgets: .*outside solver.precisions \[2, 4\]"):
        parse_params({"model": {"source": "x"}, "budgets": [1.5]})
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match=r"budgets: .*not a positive number"):
            parse_params({"model": {"source": "x"}, "budgets": [bad]})
    assert parse_params({"model": {"source": "x"}, "budgets": [3.0]}).budgets == [3.0]
