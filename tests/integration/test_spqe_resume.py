"""The spqe stage killed with SIGKILL mid-run, then rerun, writes the same bytes as an
uninterrupted run (real subprocesses, a tiny saved model).

The subprocesses call the stages' ``run`` directly (``spqe`` sampling, then
``interactions`` assembly) rather than ``impq spqe``: the CLI wraps them in Prefect flows
whose server start-up would triple the test's time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from impq.artifacts import write_tensors
from impq.estimate import ShapleyResult
from impq.models.tiny import tiny_model

pytestmark = pytest.mark.slow

PERMUTATIONS = 200

_RUN_STAGE = (
    "import logging, sys; logging.basicConfig(level=logging.INFO); "
    "from impq.pipeline.params import load_params; from impq.pipeline import interactions, spqe; "
    "params = load_params(sys.argv[1]); spqe.run(params, progress=False); "
    "interactions.run(params)"
)


def _setup(root: Path, model_dir: Path, ids: torch.Tensor) -> Path:
    write_tensors(
        root / "artifacts" / "data" / "calibration.safetensors",
        {"input_ids": ids},
        {"source": "test"},
    )
    params = {
        "model": {"source": str(model_dir), "dtype": "float32", "device": "cpu"},
        "spqe": {"permutations": PERMUTATIONS, "backend": "quanto", "group_size": 16, "seed": 3},
        "paths": {
            "artifacts": str(root / "artifacts"),
            "metrics": str(root / "metrics"),
            "plots": str(root / "plots"),
        },
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _spqe(params: Path, repo: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_STAGE, str(params)],
        cwd=params.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _saved_permutations(checkpoint: Path) -> int:
    try:
        with np.load(checkpoint) as data:
            return len(data["permutations"])
    except (OSError, ValueError, KeyError):
        return 0


def test_kill_and_resume_gives_the_uninterrupted_bytes(tmp_path: Path, repo_root: Path) -> None:
    model_dir = tmp_path / "model"
    tiny_model("llama", num_layers=6, seed=2).save_pretrained(model_dir)
    ids = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    params_whole, params_killed = _setup(whole, model_dir, ids), _setup(killed, model_dir, ids)

    proc = _spqe(params_killed, repo_root)
    checkpoint = killed / "artifacts" / "spqe" / "checkpoint.npz"
    deadline = time.monotonic() + 240
    while _saved_permutations(checkpoint) < 20 and proc.poll() is None:
        assert time.monotonic() < deadline, "spqe never wrote a checkpoint"
        time.sleep(0.05)
    assert proc.poll() is None, f"spqe finished before it could be killed:\n{proc.stdout}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = _saved_permutations(checkpoint)
    assert 20 <= done_at_kill < PERMUTATIONS
    assert not (killed / "artifacts" / "spqe" / "shapley.npz").exists()

    resumed = _spqe(params_killed, repo_root)
    uninterrupted = _spqe(params_whole, repo_root)
    out_resumed, _ = resumed.communicate(timeout=300)
    out_whole, _ = uninterrupted.communicate(timeout=300)
    assert resumed.returncode == 0, out_resumed
    assert uninterrupted.returncode == 0, out_whole
    assert "resuming from" in out_resumed

    for name in ("samples.npz", "shapley.npz", "marginals.npy"):
        a = (whole / "artifacts" / "spqe" / name).read_bytes()
        b = (killed / "artifacts" / "spqe" / name).read_bytes()
        assert a == b, f"{name} differs between the resumed and the uninterrupted run"
    assert not checkpoint.exists()

    metrics = json.loads((killed / "metrics" / "spqe.json").read_text())
    assert metrics["permutations"] == PERMUTATIONS
    assert metrics["evaluations"] == 2 + PERMUTATIONS * 5
    # at most the permutation in flight was lost
    assert metrics["evaluations_this_run"] <= 2 + (PERMUTATIONS - done_at_kill) * 5
    result = ShapleyResult.load(whole / "artifacts" / "spqe" / "shapley.npz")
    assert result.n_players == 6 and np.isfinite(result.values).all()
    assert result.meta["model_fingerprint"] and result.meta["calibration_fingerprint"]
