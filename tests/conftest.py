"""Shared fixtures: offline hub, the repo root, the shared data folder, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parents[1]
REFERENCE_MODEL = REPO / "models" / "ref-llama-12l"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The local data folder (``$IMPQ_DATA_DIR`` or ``../shared/data``)."""
    root = Path(os.environ.get("IMPQ_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (root / "wikitext-2-raw" / "wiki.test.raw").is_file():
        pytest.skip(f"no local data folder at {root}; set IMPQ_DATA_DIR")
    return root


@pytest.fixture(scope="session")
def reference_model_dir() -> Path:
    """The committed reference model (12-block Llama)."""
    return REFERENCE_MODEL
