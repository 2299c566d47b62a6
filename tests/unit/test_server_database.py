"""The embedded Prefect server starts from a kept, migrated database instead of migrating
a new one (real servers on loopback)."""

from __future__ import annotations

import sqlite3
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from flows.server import PrefectServer, database_template


def _tables(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_new_server_starts_from_the_database_the_first_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    template = database_template()
    assert not template.exists()
    first = PrefectServer(tmp_path / "first")
    try:
        first.start()
    finally:
        first.stop()
    assert {"flow_run", "task_run", "alembic_version"} <= _tables(template)

    with closing(sqlite3.connect(template)) as db:  # a mark only a copy can carry
        db.execute("CREATE TABLE impq_mark (x INTEGER)")
        db.commit()
    second = PrefectServer(tmp_path / "second")
    try:
        second.start()
        with urllib.request.urlopen(f"{second.api_url}/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        second.stop()
    assert "impq_mark" in _tables(second.home / "prefect.db")
    assert "impq_mark" not in _tables(first.home / "prefect.db")
