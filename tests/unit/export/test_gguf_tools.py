"""Locating and building the pinned llama.cpp tools (the cache folder and its stamp)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from impq.llamacpp import build as lc
from impq.llamacpp.build import LlamaCpp, LlamaCppNotBuiltError, find_llamacpp


def test_missing_build_names_the_install_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(lc.ENV_DIR, str(tmp_path / "none"))
    assert lc.install_dir() == tmp_path / "none"
    with pytest.raises(LlamaCppNotBuiltError, match="make llamacpp"):
        find_llamacpp()


def test_first_use_builds_with_a_message_and_later_uses_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(lc.ENV_DIR, str(tmp_path / "none"))
    built: list[int] = []

    def build(jobs: int = 2) -> LlamaCpp:  # what a build leaves: the tools and the stamp
        built.append(jobs)
        root = lc.install_dir()
        (root / "bin").mkdir(parents=True)
        (root / "src").mkdir()
        LlamaCpp(root).converter.write_text("")
        for tool in lc.TOOLS:
            LlamaCpp(root).tool(tool).write_text("")
            LlamaCpp(root).tool(tool).chmod(0o755)
        (root / "BUILD.json").write_text(json.dumps(lc._expected_stamp()))
        return LlamaCpp(root)

    monkeypatch.setattr(lc, "build_llamacpp", build)
    with caplog.at_level("WARNING", logger=lc.__name__):
        first = lc.ensure_llamacpp(jobs=3)
    assert built == [3]
    assert f"building llama.cpp {lc.LLAMACPP_VERSION}" in caplog.text
    assert f"about {lc.BUILD_MINUTES} minutes" in caplog.text
    assert lc.ensure_llamacpp() == first == find_llamacpp()
    assert built == [3]  # found, not built again


def test_a_build_from_other_settings_is_not_current(
    llamacpp: LlamaCpp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy"
    (copy / "bin").mkdir(parents=True)
    (copy / "src").mkdir()
    for tool in lc.TOOLS:
        shutil.copy2(llamacpp.tool(tool), copy / "bin" / tool)
    shutil.copy2(llamacpp.converter, copy / "src")
    stamp = json.loads((llamacpp.root / "BUILD.json").read_text())
    monkeypatch.setenv(lc.ENV_DIR, str(copy))
    (copy / "BUILD.json").write_text(json.dumps(stamp))
    assert find_llamacpp().root == copy
    (copy / "BUILD.json").write_text(json.dumps({**stamp, "version": "0.0.1"}))
    with pytest.raises(LlamaCppNotBuiltError):
        find_llamacpp()


def test_second_build_does_nothing(llamacpp: LlamaCpp) -> None:
    stamp = llamacpp.root / "BUILD.json"
    before = stamp.stat().st_mtime_ns
    start = time.monotonic()
    assert lc.build_llamacpp().root == llamacpp.root
    assert time.monotonic() - start < 5.0
    assert stamp.stat().st_mtime_ns == before
    assert all(os.access(llamacpp.tool(t), os.X_OK) for t in lc.TOOLS)


def test_unknown_tool_lists_the_built_ones(llamacpp: LlamaCpp) -> None:
    with pytest.raises(ValueError, match="llama-quantize"):
        llamacpp.tool("llama-server")
