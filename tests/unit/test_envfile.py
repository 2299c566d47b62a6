"""The team's env file: read into the environment, set variables kept, values never logged."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from impq.envfile import ENV_FILE_VAR, env_file, load_env_file, read_env_file

SECRET = "s3cret-value-123"


def test_lines_are_read_with_comments_export_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "team.env"
    path.write_text(
        f"# team servers\nexport PREFECT_API_AUTH_STRING='alice:{SECRET}'\n\n"
        'MLFLOW_TRACKING_URI="http://10.0.0.5:5000"\nMLFLOW_TRACKING_PASSWORD=a=b\n'
    )
    assert read_env_file(path) == {
        "PREFECT_API_AUTH_STRING": f"alice:{SECRET}",
        "MLFLOW_TRACKING_URI": "http://10.0.0.5:5000",
        "MLFLOW_TRACKING_PASSWORD": "a=b",
    }


def test_a_bad_line_names_its_number_not_its_text(tmp_path: Path) -> None:
    path = tmp_path / "team.env"
    path.write_text(f"A=1\n{SECRET}\n")
    with pytest.raises(ValueError, match=r"team\.env:2: expected KEY=VALUE") as err:
        read_env_file(path)
    assert SECRET not in str(err.value)


def test_loading_keeps_set_variables_and_logs_names_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_FILE_VAR, raising=False)
    monkeypatch.delenv("IMPQ_TEST_PASSWORD", raising=False)
    monkeypatch.setenv("IMPQ_TEST_URI", "http://set-by-the-shell")
    (tmp_path / ".env").write_text(f"IMPQ_TEST_URI=http://other\nIMPQ_TEST_PASSWORD={SECRET}\n")
    (tmp_path / ".env").chmod(0o644)
    with caplog.at_level(logging.INFO, logger="impq.envfile"):
        assert load_env_file() == ["IMPQ_TEST_PASSWORD"]
    assert os.environ["IMPQ_TEST_PASSWORD"] == SECRET
    assert os.environ["IMPQ_TEST_URI"] == "http://set-by-the-shell"
    assert "IMPQ_TEST_PASSWORD" in caplog.text and "chmod 600" in caplog.text
    assert SECRET not in caplog.text
    monkeypatch.delenv("IMPQ_TEST_PASSWORD")


def test_a_named_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_FILE_VAR, raising=False)
    assert env_file() is None
    monkeypatch.setenv(ENV_FILE_VAR, str(tmp_path / "missing.env"))
    with pytest.raises(FileNotFoundError, match=r"IMPQ_ENV_FILE: .*missing\.env is not a file"):
        env_file()
