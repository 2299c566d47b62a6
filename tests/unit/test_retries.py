"""Stage tasks retry transient failures only: bad input fails at the first attempt."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.common import STAGE_TASK
from flows.server import PrefectServer
from impq.backends.base import UnsupportedError
from impq.config import ConfigError, ModelConfig, parse_params
from impq.llamacpp.build import LlamaCppNotBuiltError
from impq.models.layout import LayoutError
from impq.models.loading import check_layout
from impq.pipeline import prepare

FAILURES: list[tuple[BaseException, int]] = [
    (ConfigError("solver.name: unknown"), 1),
    (LayoutError("model.layers is not a list of blocks"), 1),
    (UnsupportedError("quanto stores no 3-bit weights"), 1),
    (ValueError("bad input"), 1),
    (FileNotFoundError("artifacts/data/calibration.safetensors"), 1),
    (LlamaCppNotBuiltError("llama.cpp is not built"), 1),
    (RuntimeError("a worker was lost"), 3),  # transient: the first try and two retries
]


@pytest.mark.slow
def test_only_transient_failures_are_retried(tmp_path: Path) -> None:
    attempts: list[str] = []

    @task(**{**STAGE_TASK, "cache_policy": NO_CACHE, "persist_result": False})
    def fail(index: int) -> None:
        attempts.append(type(FAILURES[index][0]).__name__)
        raise FAILURES[index][0]

    @flow
    def every_failure() -> None:
        for i in range(len(FAILURES)):
            fail.with_options(retry_delay_seconds=0)(i, return_state=True)

    server = PrefectServer(tmp_path / "prefect")
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            every_failure()
    finally:
        server.stop()
    for error, expected in FAILURES:
        assert attempts.count(type(error).__name__) == expected, type(error).__name__


def test_a_declared_layout_that_does_not_fit_fails_without_loading_weights(
    reference_model_dir: Path, tmp_path: Path
) -> None:
    # a folder with the config only: checking the layout must not need the weights
    (tmp_path / "config.json").write_text((reference_model_dir / "config.json").read_text())
    fits = {"blocks": "model.layers", "linears": ["self_attn.*", "mlp.*"]}
    check_layout(ModelConfig(source=str(tmp_path), layout=fits))
    wrong = {"blocks": "model.decoder.layers", "linears": ["self_attn.*"]}
    with pytest.raises(ConfigError, match=r"model\.layout: .*model\.layers"):
        check_layout(ModelConfig(source=str(tmp_path), layout=wrong))


def test_prepare_stops_on_a_declared_layout_that_does_not_fit(
    reference_model_dir: Path, tmp_path: Path
) -> None:
    params = parse_params(
        {
            "model": {
                "source": str(reference_model_dir),
                "layout": {"blocks": "model.decoder.layers", "linears": ["self_attn.*"]},
            },
            "eval": {"methods": ["impq"]},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    with pytest.raises(ConfigError, match=r"model\.layout"):
        prepare.run(params)
    assert not prepare.calibration_path(params).exists()
