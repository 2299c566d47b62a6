"""The sweep flow decides no staleness of its own: a rerun measures only the cells whose
input fingerprint changed (a tiny saved model, the local runner, a temporary Prefect
server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from prefect.cache_policies import NO_CACHE
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

from flows.common import STAGE_TASK
from flows.sweep import float_reference, quantize_evaluate, sweep_flow
from impq.artifacts import fingerprint, read_json, write_tensors
from impq.config import Params
from impq.models.tiny import tiny_model
from impq.pipeline import baselines, sweep
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path, eval_tokens_path


def test_the_sweep_tasks_have_no_cache_key_of_their_own() -> None:
    for task in (quantize_evaluate, float_reference):
        assert task.cache_policy is NO_CACHE and not task.persist_result, task.name
        assert task.retries == STAGE_TASK["retries"], task.name


def _params(tmp_path: Path, max_windows: int = 2, batch_size: int = 4) -> Params:
    return parse_params(
        {
            "model": {"source": str(tmp_path / "model"), "device": "cpu"},
            "eval": {
                "seqlen": 32,
                "batch_size": batch_size,
                "max_windows": max_windows,
                "methods": ["uniform", "lim"],
            },
            "backends": {"names": ["hqq"], "group_size": 32},
            "budgets": [2.5, 3.0],
            "runner": {"name": "local"},
            "tracking": {"enabled": False},
            "paths": {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")},
        }
    )


@pytest.mark.slow
def test_a_rerun_of_the_flow_measures_only_stale_cells(tmp_path: Path) -> None:
    tiny_model("llama", num_layers=4).save_pretrained(tmp_path / "model")
    params = _params(tmp_path)
    ids = torch.randint(0, 256, (512,), generator=torch.Generator().manual_seed(0))
    write_tensors(eval_tokens_path(params), {"input_ids": ids}, {"fingerprint": fingerprint(ids)})
    write_tensors(calibration_path(params), {"input_ids": ids[:256].view(8, 32)}, {})
    baselines.run(params)
    files = [sweep.metrics_path(params, c) for c in sweep.combinations(params)]
    files.append(Path(params.paths.metrics, "sweep", "float.json"))

    def stamps() -> list[int]:
        return [p.stat().st_mtime_ns for p in files]

    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 300}):
        sweep_flow(params)
        first = stamps()
        rows = [read_json(p) for p in files]
        assert rows[1]["reused_from"] == "uniform-2.5"  # same bits, measured once
        sweep_flow(_params(tmp_path, batch_size=1))  # no cell depends on it
        assert stamps() == first
        sweep_flow(_params(tmp_path, max_windows=1))  # every measurement does
        assert all(a != b for a, b in zip(first, stamps(), strict=True))
        assert all(read_json(p)["n_windows"] == 1 for p in files)
