"""Params fail when they load: unknown registry names, impossible combinations, missing paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import yaml

from impq.config import ConfigError
from impq.pipeline.params import load_params, parse_params

BASE: dict[str, Any] = {"model": {"source": "org/model"}}


@pytest.mark.parametrize(
    ("over", "says"),
    [
        ({"backends": {"names": ["awq"]}}, ["backends.names", "awq", "quanto", "hqq"]),
        ({"solver": {"name": "gurobi"}}, ["solver.name", "gurobi", "anneal", "exact"]),
        ({"eval": {"methods": ["impq", "foo"]}}, ["eval.methods", "foo", "random-0"]),
        ({"eval": {"methods": ["random-x"]}}, ["eval.methods", "random-x"]),
        ({"eval": {"methods": ["sii"]}}, ["eval.methods", "sii"]),  # needs spqe.walks sii
        (
            {"spqe": {"backend": "llamacpp"}},
            ["spqe.backend", "llamacpp", "cannot play the SPQE game", "'gptq', 'hqq', 'quanto'"],
        ),
        (
            {"spqe": {"backend": "gptq", "calibration_bits": 5}},
            ["spqe.calibration_bits", "'gptq'", "not [5]"],
        ),
        ({"spqe": {"backend": "nope"}}, ["spqe.backend", "nope", "quanto"]),
        ({"solver": {"precisions": [2, 3, 4]}}, ["backends.names", "quanto", "[3]"]),
        ({"spqe": {"ladder": [4, 3]}}, ["spqe.backend", "[3]"]),
        ({"budgets": [4.5]}, ["budgets", "4.5", "solver.precisions"]),
        (
            {
                "spqe": {"backend": "hqq", "ladder": [4, 3, 2]},
                "backends": {"names": ["hqq"]},
                "solver": {"precisions": [2, 3, 4, 8]},
            },
            ["solver.precisions", "[8]", "spqe.ladder [4, 3, 2]"],
        ),
        (
            {
                "backends": {"names": ["hqq"]},
                "solver": {"precisions": [2, 4, 8]},
                "eval": {"methods": ["impq", "evopress"]},
            },
            ["eval.methods", "['evopress']", "spqe.ladder [4, 2]", "[2, 4, 8]"],
        ),
        (
            {"spqe": {"group_size": 32}, "backends": {"group_size": 64}},
            ["spqe.group_size 32", "backends.group_size 64"],
        ),
        (
            {"eval": {"methods": ["impq", "verified"]}, "spqe": {"n_samples": 32}},
            ["verified", "spqe.n_samples"],
        ),
        ({"export": {"backend": "awq"}}, ["export", "awq"]),
        (
            {
                "backends": {"names": ["gptq"], "calibrated_cells": "database"},
                "solver": {"precisions": [2, 3, 4]},
                "eval": {"methods": ["impq"]},
            },
            ["backends.calibrated_cells", "[3] bits", "spqe.ladder precisions [4, 2]"],
        ),
        (
            {
                "backends": {"names": ["gptq"], "calibrated_cells": "database"},
                "eval": {"methods": ["impq", "uniform-8"]},
            },
            ["backends.calibrated_cells", "[8] bits", "uniform-<bits>"],
        ),
        (
            {
                "backends": {"names": ["gptq"], "calibrated_cells": "database"},
                "spqe": {"calibration_bits": 5},
            },
            ["spqe.calibration_bits", "'gptq'", "not [5]", "game's database"],
        ),
    ],
)
def test_a_bad_choice_names_the_key_and_the_choices(over: dict[str, Any], says: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({**BASE, **over})
    for text in says:
        assert text in str(err.value)


def test_database_cells_need_a_backend_that_builds_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from impq.backends import base

    over = {"backends": {"names": ["gptq", "hqq", "llamacpp"], "calibrated_cells": "database"}}
    parse_params({**BASE, **over})  # data-free hqq and llamacpp's own runtime: no database
    monkeypatch.setattr(base, "database_backends", lambda: [])  # were gptq to build none
    with pytest.raises(ConfigError, match=r"'database' .* which \['gptq'\] do not build"):
        parse_params({**BASE, **over})
    parse_params({**BASE, "backends": {**over["backends"], "calibrated_cells": "sequential"}})


def test_one_group_size_either_key_sets_both() -> None:
    a = parse_params({**BASE, "backends": {"group_size": 32}})
    b = parse_params({**BASE, "spqe": {"group_size": 32}})
    assert a.spqe.group_size == a.backends.group_size == 32
    assert b.spqe.group_size == b.backends.group_size == 32


def _load(tmp_path: Path, over: dict[str, Any]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**BASE, **over}))
    load_params(path)


def test_a_missing_local_model_fails_a_hub_id_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMPQ_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    (tmp_path / "models").mkdir()
    _load(tmp_path, {"model": {"source": "meta-llama/Llama-3.2-1B"}})  # a hub id
    _load(tmp_path, {"model": {"source": "gpt2"}})
    for local in ("models/typo-12l", str(tmp_path / "nowhere"), "./ckpt", "a/b/c"):
        with pytest.raises(ConfigError, match=r"model\.source: .* does not exist"):
            _load(tmp_path, {"model": {"source": local}})


def test_a_missing_gguf_file_or_calibration_text_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMPQ_DATA_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "m.Q4_1.gguf").write_bytes(b"GGUF")
    _load(tmp_path, {"model": {"source": "ckpt", "gguf_file": "m.Q4_1.gguf"}})
    with pytest.raises(ConfigError, match=r"model.gguf_file: .*m.Q8_0.gguf.*m.Q4_1.gguf"):
        _load(tmp_path, {"model": {"source": "ckpt", "gguf_file": "m.Q8_0.gguf"}})
    with pytest.raises(ConfigError, match=r"data\.calibration\.source: 'my\.txt'"):
        _load(tmp_path, {"data": {"calibration": {"source": "my.txt"}}})
    (tmp_path / "my.txt").write_text("text")
    _load(tmp_path, {"data": {"calibration": {"source": "my.txt"}}})
    with pytest.raises(ConfigError, match=r"data\.root"):
        _load(tmp_path, {"data": {"root": "no-such-folder"}})


def test_the_repository_params_load(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    assert load_params("params.yaml").model.source == "models/ref-llama-12l"


def _one_line(err: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text  # one line, no params dump
    return text


def test_a_misspelt_key_says_which_it_meant() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({**BASE, "budgetz": [3.0]})
    assert "budgetz: unknown key; did you mean 'budgets'?" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        parse_params({**BASE, "spqe": {"ladders": [4, 2]}})
    assert "spqe.ladders: unknown key; did you mean 'ladder'?" in _one_line(err)


def test_a_bad_name_is_one_line_without_the_params() -> None:
    for over in (
        {"backends": {"names": ["awq"]}},
        {"solver": {"name": "gurobi"}},
        {"eval": {"methods": ["foo"]}},
    ):
        with pytest.raises(ConfigError) as err:
            parse_params({**BASE, **over})
        assert "org/model" not in _one_line(err)  # no echo of the whole mapping


def test_a_budget_beyond_the_precisions_names_their_range() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({**BASE, "budgets": [9.0]})
    text = _one_line(err)
    assert "budgets: 9.0 average bits is outside solver.precisions [2, 4]" in text
    assert "[2, 8]" not in text


def test_a_hub_id_with_the_hub_offline_names_model_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMPQ_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {"model": {"source": "ref-llama-12l"}})
    text = _one_line(err)
    assert "model.source: 'ref-llama-12l'" in text and "local checkpoint folder" in text
    # a model the local hub cache holds loads offline, as transformers would load it
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--org--cached" / "refs").mkdir()
    (cache / "models--org--cached" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _load(tmp_path, {"model": {"source": "org/cached"}})
    with pytest.raises(ConfigError, match=r"model\.source: 'org/other'"):
        _load(tmp_path, {"model": {"source": "org/other"}})


def test_an_empty_calibration_text_names_the_key_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMPQ_DATA_DIR", raising=False)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ConfigError) as err:
        _load(
            tmp_path,
            {"model": {"source": "ckpt"}, "data": {"calibration": {"source": "empty.txt"}}},
        )
    text = _one_line(err)
    assert "data.calibration.source" in text and "empty.txt holds no text" in text
