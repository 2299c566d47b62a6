"""Team servers with authentication: a Prefect server with basic auth and an MLflow
server with ``--app-name basic-auth``, both on 127.0.0.1.

A stage run whose credentials come from the project's env file (``.env``) reports to
both; a client without them is refused with 401; the credentials appear in no log, no
Prefect or MLflow record and no file the run wrote.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import BIN, REPO, base_env, free_port, make_project, run, start_server

from impq import tracking
from impq.config import parse_params

pytestmark = pytest.mark.slow

PREFECT_USER, MLFLOW_USER = "impq-team", "impq-admin"


class Team:
    """The two servers, their credentials and their logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefect_password = "pf-" + secrets.token_hex(12)
        self.mlflow_password = "ml-" + secrets.token_hex(12)
        self.prefect_url = f"http://127.0.0.1:{free_port()}/api"
        self.mlflow_url = f"http://127.0.0.1:{free_port()}"
        self.logs: list[Path] = []

    @property
    def secrets(self) -> list[str]:
        return [self.prefect_password, self.mlflow_password]

    def env_file(self) -> str:
        return (
            f"PREFECT_API_URL={self.prefect_url}\n"
            f"PREFECT_API_AUTH_STRING={PREFECT_USER}:{self.prefect_password}\n"
            f"MLFLOW_TRACKING_URI={self.mlflow_url}\n"
            f"MLFLOW_TRACKING_USERNAME={MLFLOW_USER}\n"
            f"MLFLOW_TRACKING_PASSWORD={self.mlflow_password}\n"
        )


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    team = Team(tmp_path_factory.mktemp("team"))
    home = team.root / "prefect-home"
    prefect_env = {
        **base_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_AUTH_STRING": f"{PREFECT_USER}:{team.prefect_password}",
    }
    port = team.prefect_url.split(":")[-1].removesuffix("/api")
    team.logs.append(team.root / "prefect.log")
    prefect = start_server(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        f"{team.prefect_url}/health",  # answers without credentials
        team.logs[-1],
        prefect_env,
    )
    ini = team.root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{team.root / 'auth.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    mlflow_env = {
        **base_env(),
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": team.mlflow_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    team.logs.append(team.root / "mlflow.log")
    try:
        mlflow = start_server(
            [
                *(str(BIN / "mlflow"), "server", "--app-name", "basic-auth"),
                *("--host", "127.0.0.1", "--port", team.mlflow_url.split(":")[-1]),
                *("--workers", "1", "--backend-store-uri", f"sqlite:///{team.root / 'ml.db'}"),
                *("--artifacts-destination", str(team.root / "artifacts")),
            ],
            f"{team.mlflow_url}/health",
            team.logs[-1],
            mlflow_env,
        )
    except BaseException:
        prefect.stop()
        raise
    try:
        yield team
    finally:
        mlflow.stop()
        prefect.stop()


def test_a_client_without_credentials_is_refused(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for auth in (None, (PREFECT_USER, "wrong-password")):
        flows = httpx.post(f"{team.prefect_url}/flows/filter", json={}, auth=auth, timeout=30)
        assert flows.status_code == 401
        search = f"{team.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search, auth=auth, timeout=30).status_code == 401
    # the pipeline's own client says what to set, instead of running on untracked
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "IMPQ_ENV_FILE"):
        monkeypatch.delenv(name, raising=False)
    params = parse_params({"model": {"source": "x"}, "tracking": {"uri": team.mlflow_url}})
    with (
        pytest.raises(tracking.TrackingAuthError, match="MLFLOW_TRACKING_USERNAME"),
        tracking.stage_run(params, "prepare"),
    ):
        pass


def _files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.name != ".env":
            yield path


def test_a_stage_reports_to_both_with_the_env_files_credentials(team: Team, tmp_path: Path) -> None:
    env = base_env()  # no server address, no credentials: they come from .env
    env["PREFECT_HOME"] = str(tmp_path / "prefect-client")
    env["IMPQ_DATA_DIR"] = os.environ.get("IMPQ_DATA_DIR") or str(REPO.parent / "shared" / "data")
    for name in ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    project = make_project(tmp_path / "project", env, experiment="team")
    (project / ".env").write_text(team.env_file())
    (project / ".env").chmod(0o600)

    out = run(
        [str(BIN / "python"), "-m", "flows", "prepare", "--params", "params.yaml"], project, env
    )

    prefect_auth = (PREFECT_USER, team.prefect_password)
    runs = httpx.post(
        f"{team.prefect_url}/flow_runs/filter", json={}, auth=prefect_auth, timeout=30
    ).json()
    assert [(r["name"] != "", r["state_type"]) for r in runs] == [(True, "COMPLETED")]
    logs = httpx.post(f"{team.prefect_url}/logs/filter", json={}, auth=prefect_auth, timeout=30)
    mlflow_auth = (MLFLOW_USER, team.mlflow_password)
    experiment = httpx.get(
        f"{team.mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": "team"},
        auth=mlflow_auth,
        timeout=30,
    ).json()["experiment"]
    found = httpx.post(
        f"{team.mlflow_url}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [experiment["experiment_id"]]},
        auth=mlflow_auth,
        timeout=30,
    )
    stages = [
        tag["value"]
        for r in found.json()["runs"]
        for tag in r["data"].get("tags", [])
        if tag["key"] == "impq.stage"
    ]
    assert stages == ["prepare"]

    records = {
        "stage output": out.stdout + out.stderr,
        "Prefect run logs": logs.text,
        "MLflow runs": found.text,
        **{str(p): p.read_text(errors="replace") for p in team.logs},
        **{str(p): p.read_bytes().decode(errors="replace") for p in _files_under(project)},
        **{str(p): p.read_bytes().decode(errors="replace") for p in _files_under(team.root)},
    }
    for where, text in records.items():
        for secret in team.secrets:
            assert secret not in text, f"a credential appears in {where}"
