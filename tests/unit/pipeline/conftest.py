"""Fixtures the pipeline stages' tests share."""

from __future__ import annotations

import pytest

from impq.pipeline import spqe


@pytest.fixture
def no_game_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each spqe run builds its game again, as a new process would (not this process's game)."""
    monkeypatch.setattr(spqe, "_WORKER_GAMES", {})
