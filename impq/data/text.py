"""Evaluation and calibration text, from a local data folder or the hub."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["calibration_text", "wikitext2_test_text"]

log = logging.getLogger(__name__)

WIKITEXT_TEST = "wikitext-2-raw/wiki.test.raw"
WIKITEXT_VALID_TOKENS = "wikitext-2-tokens/valid.txt"
HELDOUT = "reference-corpus/heldout.txt"


def _rows_from_raw(raw: str) -> list[str]:
    """The Hugging Face ``wikitext-2-raw-v1`` rows of a raw ``wiki.*.raw`` file."""
    lines = raw.split("\n")[:-1]
    return [(line + "\n") if line.strip() else "" for line in lines]


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {what} not found. data.root must be laid out like shared/data "
            f"({WIKITEXT_TEST}, {HELDOUT}); or unset it to use the hub."
        )
    return path


def wikitext2_test_text(root: Path | None) -> str:
    """WikiText-2 raw test split joined with blank lines (the GPTQ evaluation string).

    Args:
        root: a local data folder holding ``wikitext-2-raw/wiki.test.raw``; None
            downloads the split from the hub.
    """
    if root is not None:
        raw = _require(root / WIKITEXT_TEST, "WikiText-2 raw test split").read_text("utf-8")
        rows = _rows_from_raw(raw)
    else:
        from datasets import load_dataset

        rows = load_dataset("wikitext", "wikitext-2-raw-v1", split="test")["text"]
    return "\n\n".join(rows)


def calibration_text(source: str, root: Path | None) -> str:
    """Text to draw calibration sequences from; never the evaluation (test) split.

    ``source`` is 'heldout', 'wikitext2-valid' (local tokenized valid split, ``<unk>``
    kept), 'wikitext2-train' or 'c4' (hub), or a path to a text file.
    """
    if source == "heldout":
        if root is None:
            raise ValueError("calibration source 'heldout' needs data.root (or $IMPQ_DATA_DIR)")
        return _require(root / HELDOUT, "held-out reference corpus").read_text("utf-8")
    if source == "wikitext2-valid":
        if root is None:
            raise ValueError("calibration source 'wikitext2-valid' needs data.root")
        return _require(root / WIKITEXT_VALID_TOKENS, "WikiText-2 valid split").read_text("utf-8")
    if source == "wikitext2-train":
        from datasets import load_dataset

        rows = load_dataset("wikitext", "wikitext-2-raw-v1", split="train")["text"]
        return "\n\n".join(rows)
    if source == "c4":
        from datasets import load_dataset

        files = {"validation": "en/c4-validation.00000-of-00008.json.gz"}
        rows = load_dataset("allenai/c4", data_files=files, split="validation")["text"]
        return "\n\n".join(rows[:20000])
    path = Path(source).expanduser()
    if path.name == Path(WIKITEXT_TEST).name:
        raise ValueError(f"{path}: calibration must not be drawn from the evaluation split")
    if not path.is_file():
        raise FileNotFoundError(
            f"data.calibration.source: {source!r} is neither a known source "
            "('heldout', 'wikitext2-valid', 'wikitext2-train', 'c4') nor an existing text file"
        )
    return path.read_text("utf-8")
