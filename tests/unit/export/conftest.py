"""Fixtures of the GGUF tests: the built llama.cpp tools, tiny models, text, an export."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from gguf_models import MIXED, REFERENCE_MODEL, SETTINGS, save_tiny, text_ids

from impq.llamacpp.build import LlamaCpp, LlamaCppNotBuiltError, find_llamacpp
from impq.llamacpp.gguf import export_gguf


@pytest.fixture(scope="session")
def llamacpp() -> LlamaCpp:
    """The pinned llama.cpp build.

    Missing, the test is skipped only where it cannot be built (no cmake or C++ compiler)
    or its build was turned off (``make ... LLAMACPP=0``); anywhere else, CI included, it
    fails, so that the llama.cpp tests cannot silently stop running.
    """
    try:
        return find_llamacpp()
    except LlamaCppNotBuiltError as err:
        missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"{err} (and it cannot be built here: no {', '.join(missing)})")
        if os.environ.get("IMPQ_LLAMACPP") == "0":
            pytest.skip(f"{err} (its build was turned off: LLAMACPP=0)")
        pytest.fail(f"{err}; this machine can build it: make llamacpp", pytrace=False)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Architecture -> a saved tiny model folder (llama, qwen3, gemma2)."""
    return {
        arch: save_tiny(tmp_path_factory.mktemp(f"tiny-{arch}"), arch)
        for arch in ("llama", "qwen3", "gemma2")
    }


@pytest.fixture(scope="session")
def reference_ids() -> torch.Tensor:
    """Token ids of real text (this repository's README) under the reference tokenizer."""
    return text_ids(REFERENCE_MODEL)


@pytest.fixture(scope="session")
def calibration(reference_ids: torch.Tensor) -> torch.Tensor:
    """Four windows of 64 tokens from the start of the text (evaluation uses the end)."""
    return reference_ids[: 4 * 64].view(4, 64)


@pytest.fixture(scope="session")
def exported(
    llamacpp: LlamaCpp,
    tiny_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path]]:
    """Architecture -> (mixed-precision GGUF, workdir holding the float GGUF and imatrix),
    calibrated on the start of the README under the model's own tokenizer."""
    out = {}
    for arch, folder in tiny_dirs.items():
        work = tmp_path_factory.mktemp(f"gguf-{arch}")
        calibration = text_ids(folder)[: 4 * 64].view(4, 64)
        path = export_gguf(folder, MIXED, calibration, work / "mixed.gguf", SETTINGS, work)
        out[arch] = (path, work)
    return out
