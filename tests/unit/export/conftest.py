"""Fixtures of the GGUF tests: the built llama.cpp tools, tiny models, text, an export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf_models import MIXED, REFERENCE_MODEL, REPO, SETTINGS, save_tiny
from transformers import AutoTokenizer

from impq.export.gguf import export_gguf
from impq.export.llamacpp import LlamaCpp, LlamaCppNotBuiltError, find_llamacpp


@pytest.fixture(scope="session")
def llamacpp() -> LlamaCpp:
    """The pinned llama.cpp build; the test is skipped when it is not built."""
    try:
        return find_llamacpp()
    except LlamaCppNotBuiltError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Architecture -> a saved tiny model folder (llama and qwen3)."""
    return {
        arch: save_tiny(tmp_path_factory.mktemp(f"tiny-{arch}"), arch)
        for arch in ("llama", "qwen3")
    }


@pytest.fixture(scope="session")
def text_ids() -> torch.Tensor:
    """Token ids of real text (this repository's README) under the reference tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(str(REFERENCE_MODEL))
    ids = tokenizer((REPO / "README.md").read_text("utf-8"), add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.int64)


@pytest.fixture(scope="session")
def calibration(text_ids: torch.Tensor) -> torch.Tensor:
    """Four windows of 64 tokens from the start of the text (evaluation uses the end)."""
    return text_ids[: 4 * 64].view(4, 64)


@pytest.fixture(scope="session")
def exported(
    llamacpp: LlamaCpp,
    tiny_dirs: dict[str, Path],
    calibration: torch.Tensor,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path]]:
    """Architecture -> (mixed-precision GGUF, workdir holding the float GGUF and imatrix)."""
    out = {}
    for arch, folder in tiny_dirs.items():
        work = tmp_path_factory.mktemp(f"gguf-{arch}")
        path = export_gguf(folder, MIXED, calibration, work / "mixed.gguf", SETTINGS, work)
        out[arch] = (path, work)
    return out
