"""``python -m impq <stage>``: one stage in the process, without Prefect (impq.pipeline.cli)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from impq.pipeline.cli import main

REPO = Path(__file__).resolve().parents[3]

RUN_AND_LIST_IMPORTS = """
import runpy, sys
try:
    runpy.run_module("impq", run_name="__main__", alter_sys=True)
finally:
    print("imported:", sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "flows"}))
"""


def test_a_bad_params_file_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--params", "nope.yaml"]) == 2
    assert "impq report: error: nope.yaml: no such params file" in capsys.readouterr().err


@pytest.mark.slow  # tokenizes the WikiText-2 test split in a fresh interpreter
def test_a_stage_runs_and_prints_what_it_wrote_without_prefect(
    tmp_path: Path, data_root: Path, reference_model_dir: Path
) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["source"] = str(reference_model_dir)
    params["data"] = {**params.get("data", {}), "root": str(data_root)}
    params["paths"] = {k: str(tmp_path / k) for k in ("artifacts", "metrics", "plots")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_IMPORTS, "prepare", "--params", "params.yaml"],
        cwd=tmp_path,
        env={
            "PATH": str(Path(sys.executable).parent),
            "PYTHONPATH": str(REPO),
            "HOME": str(Path.home()),
            "HF_HUB_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"wrote {tmp_path / 'artifacts'}" in out.stdout
    assert (tmp_path / "artifacts" / "data" / "calibration.safetensors").is_file()
    assert "imported: []" in out.stdout
