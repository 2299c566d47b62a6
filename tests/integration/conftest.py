"""Real components for the integration tests: servers on 127.0.0.1 and a git+DVC project.

Session fixtures start a real ``prefect server`` and a real ``mlflow server`` on free
ports (state in a temporary folder) and stop them at the end; ``project`` builds a
temporary git+DVC repository from a copy of the project files with a tiny params.yaml.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import BIN, REPO, base_env, free_port, make_project, start_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server on 127.0.0.1; yields its API URL (``.../api``)."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **base_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    server = start_server(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        f"http://127.0.0.1:{port}/api/health",
        home / "server.log",
        env,
    )
    yield f"http://127.0.0.1:{port}/api"
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 (sqlite store); yields its URI."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    server = start_server(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        f"http://127.0.0.1:{port}/health",
        root / "server.log",
        base_env(),
    )
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def server_env(prefect_server: str, mlflow_server: str, tmp_path_factory) -> dict[str, str]:
    """Subprocess environment that reports to both test servers."""
    env = base_env()
    env.update(
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path_factory.mktemp("prefect-client")),
        MLFLOW_TRACKING_URI=mlflow_server,
    )
    data = os.environ.get("IMPQ_DATA_DIR") or str(REPO.parent / "shared" / "data")
    env["IMPQ_DATA_DIR"] = data
    return env


@pytest.fixture(scope="module")
def project(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    server_env: dict[str, str],
) -> Path:
    """A fresh temporary git+DVC project per test module (its DVC remote beside it).

    Each logs to its own MLflow experiment, ``it-<module>``.
    """
    experiment = f"it-{request.module.__name__.rsplit('.', 1)[-1]}"
    return make_project(tmp_path_factory.mktemp("it") / "project", server_env, None, experiment)
