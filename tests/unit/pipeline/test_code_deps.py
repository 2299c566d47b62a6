"""A stage's code deps are read from what its work and flow import (impq.pipeline.code)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from impq.pipeline import code
from impq.pipeline.code import code_deps, imported_modules
from impq.pipeline.stages import STAGES


def test_the_spqe_stage_depends_on_what_it_imports() -> None:
    code = STAGES["spqe"].code
    # the files the hand-kept list missed (issue 26)
    assert {"impq/config.py", "impq/artifacts.py", "impq/pipeline/paths.py"} <= set(code)
    assert {"impq/pipeline/spqe.py", "flows/spqe.py", "flows/fanout.py"} <= set(code)
    assert "impq/export" not in code and "impq/pipeline/sweep" not in code


def test_function_level_imports_and_registry_entries_are_followed() -> None:
    # pipeline.params imports the solvers' registry inside a function only
    assert "impq.solve.base" in imported_modules(["impq.pipeline.params"])
    # the llamacpp backend is reached only through BACKENDS' "module:Class" string
    modules = imported_modules(["impq.backends.base"])
    assert {"impq.backends.llamacpp", "impq.llamacpp.gguf"} <= modules


def test_the_stage_declarations_are_not_followed() -> None:
    # stages.py names every stage's work: following it would make each stage depend on all
    assert "impq/pipeline/export.py" not in STAGES["prepare"].code
    assert "impq.pipeline.stages" not in imported_modules(["flows.stage"])


def test_packages_below_the_stages_are_listed_as_folders() -> None:
    deps = code_deps(["impq.pipeline.evaluate"])
    assert "impq/eval" in deps and "impq/models" in deps
    assert not [d for d in deps if d.startswith(("impq/eval/", "impq/models/"))]
    assert "impq/pipeline/evaluate.py" in deps


def test_a_change_in_a_stage_s_code_changes_its_key_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare, compare = STAGES["prepare"], STAGES["compare"]
    before = {s.name: s.code_version() for s in (prepare, compare)}
    for package in code.PACKAGES:
        shutil.copytree(code.ROOT / package, tmp_path / package)
    monkeypatch.setattr(code, "ROOT", tmp_path)
    code.code_fingerprint.cache_clear()
    assert {s.name: s.code_version() for s in (prepare, compare)} == before
    with (tmp_path / "impq/pipeline/compare.py").open("a") as f:
        f.write("\n# changed\n")
    code.code_fingerprint.cache_clear()
    assert prepare.code_version() == before["prepare"]
    assert compare.code_version() != before["compare"]
    code.code_fingerprint.cache_clear()
