"""A family without a built-in layout, from params.yaml alone: ``dvc repro`` on a tiny
Gemma-3 (sliding and full attention layers), whose layout the pipeline infers.

The fixture builds and saves the model (with the reference model's tokenizer) as a
user's checkpoint folder would be; the run itself is ``params.yaml`` and
``dvc repro evaluate sweep export``: every stage but report and compare, which read no
model (test_dvc_pipeline runs them).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from harness import REPO, make_project, run, tiny_params

from impq.estimate import ShapleyResult
from impq.models import block_param_counts
from impq.models.tiny import tiny_model

pytestmark = pytest.mark.slow

MODEL_DIR = "models/tiny-gemma3"
N_BLOCKS = 4
TOKENIZER = ("tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def gemma3_project(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Path:
    """A git+DVC project whose params point at a saved tiny Gemma-3 checkpoint."""
    params = tiny_params(
        {
            "model": {"source": MODEL_DIR, "device": "cpu"},
            "spqe": {"permutations": 2 * N_BLOCKS, "group_size": 32},
            "backends": {"names": ["quanto", "hqq"], "group_size": 32},
            "tracking": {"experiment": "it-any-architecture"},
        }
    )
    project = make_project(
        tmp_path_factory.mktemp("it") / "project", server_env, params, "it-any-architecture"
    )
    model = tiny_model("gemma3_text", num_layers=N_BLOCKS, seed=0, vocab_size=4096)
    model.save_pretrained(project / MODEL_DIR)
    for name in TOKENIZER:
        shutil.copy2(REPO / "models" / "ref-llama-12l" / name, project / MODEL_DIR / name)
    run(["git", "add", "-A"], project, server_env)
    run(["git", "commit", "-q", "-m", "a tiny Gemma-3 checkpoint"], project, server_env)
    return project


def test_dvc_repro_runs_an_inferred_architecture(
    gemma3_project: Path, server_env: dict[str, str]
) -> None:
    project = gemma3_project
    assert "layout" not in (project / "params.yaml").read_text()  # nothing declared
    out = run(["dvc", "repro", "evaluate", "sweep", "export"], project, server_env)
    log = out.stdout + out.stderr
    assert "layout of Gemma3ForCausalLM (model_type 'gemma3_text'): inferred" in log

    float_ppl = json.loads((project / "metrics" / "float.json").read_text())["ppl"]
    assert math.isfinite(float_ppl) and float_ppl > 1.0
    result = ShapleyResult.load(project / "artifacts" / "spqe" / "shapley.npz")
    assert result.n_players == N_BLOCKS
    saved = tiny_model("gemma3_text", num_layers=N_BLOCKS, seed=0, vocab_size=4096)
    assert list(result.block_params) == block_param_counts(saved)

    sweep = json.loads((project / "metrics" / "sweep.json").read_text())
    for backend in ("quanto", "hqq"):
        for method in ("impq", "lim", "uniform"):
            ppl = sweep[f"{backend}/{method}/3.0/ppl"]
            assert math.isfinite(ppl) and ppl > 1.0
        rows = [
            json.loads(p.read_text()) for p in (project / "metrics/sweep" / backend).glob("*.json")
        ]
        assert len(rows) == 3 and all(r["stored_bytes"] > 0 for r in rows)
        assert all(r["avg_bits"] <= 3.0 + 1e-9 for r in rows)  # the budget holds
    shipped = json.loads((project / "metrics" / "export.json").read_text())
    assert shipped["stored_bytes"] <= shipped["budget_bytes"]
    assert math.isfinite(shipped["ppl_reloaded"])
    assert shipped["ppl_rel_diff"] <= shipped["ppl_rtol"]  # the shipped files reload as run
