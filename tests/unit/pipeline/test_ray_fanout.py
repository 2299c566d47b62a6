"""Fan-out on a real local Ray cluster (2 CPU workers) through prefect-ray: SPQE's
permutation chunks give the local runner's bytes with the model loaded once per worker,
a worker killed mid-run loses only its chunk, which a rerun fills in; the sweep's
combinations give the local runner's rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import torch
from prefect import flow
from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

from flows.common import KILL_ENV, prefect_api_url
from flows.fanout import PrefectFanout
from flows.sweep import sweep_flow
from impq.artifacts import fingerprint, read_json, write_tensors
from impq.config import Params
from impq.models.tiny import tiny_model
from impq.pipeline import baselines, spqe, sweep
from impq.pipeline.params import parse_params
from impq.pipeline.prepare import calibration_path, eval_tokens_path

PERMUTATIONS, CHUNK, BLOCKS = 12, 2, 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2-CPU local Ray instance whose workers report to this process's Prefect server.

    Yields the trigger file of the kill hook: a chunk task that finds it dies (SIGKILL).
    """
    trigger = tmp_path_factory.mktemp("faults") / "kill-a-worker"
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 300}):
        url = prefect_api_url()  # a shared 2-core machine may take a while to start it
    env = {"PREFECT_API_URL": url, KILL_ENV: f"spqe-chunk:{trigger}"}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env})
    yield trigger
    ray.shutdown()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny saved model, calibration ids, and the samples the local runner writes."""
    root = tmp_path_factory.mktemp("spqe-ray")
    tiny_model("llama", num_layers=BLOCKS, seed=1).save_pretrained(root / "model")
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    local = _params(root / "local", root, ids, "local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with one CPU runs
    try:
        spqe.run(local, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "ids": ids, "local": spqe.samples_path(local).read_bytes()}


def _params(where: Path, root: Path, ids: torch.Tensor, runner: str) -> Params:
    write_tensors(where / "artifacts/data/calibration.safetensors", {"input_ids": ids}, {})
    return parse_params(
        {
            "model": {"source": str(root / "model"), "device": "cpu"},
            "spqe": {"permutations": PERMUTATIONS, "group_size": 16},
            "runner": {"name": runner, "workers": 2, "chunk_permutations": CHUNK},
            "paths": {"artifacts": str(where / "artifacts"), "metrics": str(where / "metrics")},
        }
    )


@flow(name="spqe-sampling-test")
def _sample(params: Params) -> list[Path]:
    with PrefectFanout(params) as fanout:
        return spqe.run(params, progress=False, fanout=fanout)


def test_two_ray_workers_give_the_local_runners_bytes(
    cluster: Path, project: dict[str, Any], tmp_path: Path
) -> None:
    params = _params(tmp_path, project["root"], project["ids"], "ray")
    _sample(params)
    assert spqe.samples_path(params).read_bytes() == project["local"]
    metrics = read_json(spqe.sampling_metrics_path(params))
    assert metrics["workers"] == 2  # both workers took chunks
    assert metrics["worker_model_loads"] == 1  # each loaded the model once for 6 chunks
    assert metrics["evaluations_this_run"] == 2 + PERMUTATIONS * (BLOCKS - 1)


def test_a_killed_worker_loses_only_its_chunk_and_a_rerun_fills_it_in(
    cluster: Path, project: dict[str, Any], tmp_path: Path
) -> None:
    params = _params(tmp_path, project["root"], project["ids"], "ray")
    cluster.write_text("the first chunk task to claim this file dies\n")
    with pytest.raises(spqe.ChunksLostError, match="1 chunk"):
        _sample(params)
    assert not cluster.exists(), "no worker was killed"
    assert not spqe.samples_path(params).exists()
    with np.load(spqe.checkpoint_path(params)) as saved:
        kept = saved["indices"].tolist()
    assert len(kept) == PERMUTATIONS - CHUNK  # every other chunk finished and was kept

    _sample(params)  # the rerun computes the lost chunk only
    assert spqe.samples_path(params).read_bytes() == project["local"]
    metrics = read_json(spqe.sampling_metrics_path(params))
    assert metrics["evaluations_this_run"] == CHUNK * (BLOCKS - 1)
    assert not spqe.checkpoint_path(params).exists()


WORK = {"quantize_seconds", "eval_seconds", "blocks_quantized"}
"""How long a cell took and how many blocks it found cached: where it ran, not its result."""


def _sweep_params(where: Path, model: Path, runner: str) -> Params:
    params = parse_params(
        {
            "model": {"source": str(model), "device": "cpu"},
            "eval": {
                "seqlen": 32,
                "batch_size": 4,
                "max_windows": 2,
                "methods": ["uniform", "lim"],
            },
            "backends": {"names": ["quanto"], "group_size": 32},
            "budgets": [2.5, 3.0],
            "runner": {"name": runner, "workers": 2},
            "tracking": {"enabled": False},
            "paths": {k: str(where / k) for k in ("artifacts", "metrics", "plots")},
        }
    )
    ids = torch.randint(0, 256, (512,), generator=torch.Generator().manual_seed(0))
    write_tensors(eval_tokens_path(params), {"input_ids": ids}, {"fingerprint": fingerprint(ids)})
    write_tensors(calibration_path(params), {"input_ids": ids[:256].view(8, 32)}, {})
    baselines.run(params)
    return params


def test_sweep_combinations_on_ray_workers_give_the_local_rows(
    cluster: Path, project: dict[str, Any], tmp_path: Path
) -> None:
    model = project["root"] / "model"
    rows = {}
    for runner in ("local", "ray"):
        params = _sweep_params(tmp_path / runner, model, runner)
        sweep_flow(params)
        cells = [sweep.metrics_path(params, c) for c in sweep.combinations(params)]
        rows[runner] = [{k: v for k, v in read_json(p).items() if k not in WORK} for p in cells]
        assert read_json(Path(params.paths.metrics) / "sweep.json")["float/ppl_status"] == "finite"
    assert len(rows["ray"]) == 4
    assert rows["ray"] == rows["local"]
