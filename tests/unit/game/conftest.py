"""Game tests run torch on one thread: tiny matmuls on a shared 2-core machine are
many times faster without OpenMP barriers between oversubscribed threads."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs torch on one thread."""
