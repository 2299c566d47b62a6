"""Flow-run heartbeats: off against the server ``flows.server`` started, on elsewhere."""

from __future__ import annotations

import pytest
from prefect.settings import get_current_settings

from flows import stage
from flows.env import EMBEDDED_ENV

API = "http://127.0.0.1:4200/api"


@pytest.mark.parametrize(("embedded", "beats"), [(API, False), ("http://other:4200/api", True)])
def test_heartbeats_only_where_someone_reads_them(
    monkeypatch: pytest.MonkeyPatch, embedded: str, beats: bool
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", API)
    monkeypatch.setenv(EMBEDDED_ENV, embedded)
    with stage._heartbeats():
        assert (get_current_settings().flows.heartbeat_frequency is not None) is beats
    assert get_current_settings().flows.heartbeat_frequency is not None  # restored


def test_heartbeats_stay_without_an_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EMBEDDED_ENV, raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with stage._heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is not None
