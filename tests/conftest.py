"""Shared fixtures: offline hub, the repo root, the shared data folder, tiny models."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # Started as a background job (`cmd &`, nohup), the suite inherits SIGINT ignored, and so
    # would every process it starts: the tests of what Ctrl-C stops would fail. A handled
    # signal goes back to its default in a child, so handle it here as Python does.
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_MODEL = REPO / "models" / "ref-llama-12l"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip what this machine cannot run: ``gpu`` tests without a CUDA device, ``gptq``
    tests without gptqmodel (the ``impq[gptq]`` extra)."""
    import importlib.util

    missing = {}
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            missing["gpu"] = "needs a CUDA device"
    if importlib.util.find_spec("gptqmodel") is None:
        missing["gptq"] = "gptqmodel is not installed (impq[gptq])"
    for item in items:
        for marker, reason in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _prefect_ends_while_output_is_captured() -> Iterator[None]:
    """Stop what Prefect started in this process (its log and event workers, its temporary
    API server) when the session ends, while pytest still captures output. Left to
    ``atexit``, they log into the capture stream pytest has closed by then, and the run
    ends with ``--- Logging error ---`` tracebacks."""
    yield
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        worker.drain_all(timeout=30)
    if (server := sys.modules.get("prefect.server.api.server")) is not None:
        for temporary in list(server.SubprocessASGIServer._instances.values()):
            temporary.stop()


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


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the test: tiny matmuls on a shared 2-core machine are many
    times faster without OpenMP barriers between oversubscribed threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spqe_checkpoint_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The key of every checkpoint the spqe stage opens from now on, in order."""
    from impq.pipeline import spqe

    keys: list[str] = []
    real = spqe.Checkpoint

    def recording(path: Path, key: str) -> object:
        keys.append(key)
        return real(path, key)

    monkeypatch.setattr(spqe, "Checkpoint", recording)
    return keys
