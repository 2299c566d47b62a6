"""``dvc.yaml``'s model dependency follows ``model.source`` in params.yaml (real DVC).

A scratch DVC project holds the committed ``dvc.yaml``, the code it depends on and two
copies of the reference model. Every stage is committed as it stands (``dvc commit``,
nothing runs); then pointing ``model.source`` at the other copy, or changing a file of
the model in place, must make ``dvc status`` report exactly the stages that read it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from harness import BIN, REPO, base_env, run

pytestmark = pytest.mark.slow

MODEL = "models/ref-llama-12l"


def _outputs(dvc: dict, params: dict) -> list[str]:
    """Every path the stages write, ``${...}`` resolved from ``params``."""
    found = []
    for stage in dvc["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                name = next(iter(entry)) if isinstance(entry, dict) else entry
                if name.startswith("${"):
                    section, key = name[2:-1].split(".")
                    name = params[section][key]
                found.append(name)
    return found


def _set_source(project: Path, source: str) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["model"]["source"] = source
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def _changed(project: Path, env: dict[str, str]) -> set[str]:
    out = run([str(BIN / "dvc"), "status", "--json"], project, env).stdout
    return set(json.loads(out or "{}"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dest = tmp_path / "project"
    dest.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("impq", "flows"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / MODEL, dest / "models" / "a")
    shutil.copytree(REPO / MODEL, dest / "models" / "b")
    (dest / "models" / "b" / "SOURCE.md").write_text("another checkpoint\n")
    _set_source(dest, "models/a")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for name in _outputs(yaml.safe_load((dest / "dvc.yaml").read_text()), params):
        path = dest / name
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "placeholder").write_text(name)
    env = base_env()
    run([str(BIN / "dvc"), "init", "--no-scm", "-q"], dest, env)
    run([str(BIN / "dvc"), "commit", "-f", "-q"], dest, env)
    assert _changed(dest, env) == set()
    return dest


def _model_stages(project: Path) -> set[str]:
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return {name for name, s in stages.items() if "${model.source}" in s.get("deps", [])}


def test_another_model_source_reruns_the_stages_that_read_the_model(project: Path) -> None:
    env = base_env()
    readers = _model_stages(project)
    assert {"prepare", "evaluate", "spqe", "sweep", "export"} <= readers
    _set_source(project, "models/b")
    assert _changed(project, env) == readers  # interactions, report, ... are not touched


def test_a_changed_model_file_reruns_them_without_a_params_change(project: Path) -> None:
    env = base_env()
    with (project / "models" / "a" / "config.json").open("a") as f:
        f.write("\n")
    assert _changed(project, env) == _model_stages(project)
