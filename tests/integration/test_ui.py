"""Both UIs, in headless Chromium, show the runs of a stage (screenshot test).

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it).
Screenshots go to ``$IMPQ_UI_SCREENSHOTS`` when set, else to the test's temporary folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest
from browser import capture, chromium
from harness import experiment_of, run
from matplotlib.image import imread

pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
    pytest.mark.skipif(chromium() is None, reason="needs chromium: apt-get install -y chromium"),
]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("IMPQ_UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def prepared(project: Path, server_env: dict[str, str]) -> Path:
    run([sys.executable, "-m", "flows", "prepare"], project, server_env)
    return project


def assert_not_blank(png: Path) -> None:
    image = imread(png)
    assert image.shape[0] >= 600 and image.shape[1] >= 1200
    assert image[..., :3].std() > 0.05, f"{png} looks blank"


def test_prefect_ui_shows_the_flow_run(prepared: Path, prefect_server: str, shots: Path) -> None:
    (latest,) = httpx.post(
        f"{prefect_server}/flow_runs/filter",
        json={"flows": {"name": {"any_": ["prepare"]}}, "sort": "START_TIME_DESC", "limit": 1},
    ).json()
    ui = prefect_server.removesuffix("/api")
    png = shots / "prefect-flow-run.png"
    text = capture(f"{ui}/runs/flow-run/{latest['id']}", [latest["name"], "Completed"], png)
    assert latest["name"] in text and "Completed" in text, text[:2000]
    assert_not_blank(png)


def test_mlflow_ui_shows_the_nested_stage_run(
    prepared: Path, mlflow_server: str, shots: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name(experiment_of(prepared))
    (stage,) = client.search_runs(
        [exp.experiment_id], "tags.`impq.stage` = 'prepare'", max_results=1
    )
    parent = client.get_run(stage.data.tags["mlflow.parentRunId"]).info.run_name
    png = shots / "mlflow-stage-run.png"
    url = f"{mlflow_server}/#/experiments/{exp.experiment_id}/runs/{stage.info.run_id}"
    text = capture(url, ["prepare", "Parent run", parent, "Finished"], png)
    assert parent in text and "Finished" in text, text[:2000]
    assert_not_blank(png)
