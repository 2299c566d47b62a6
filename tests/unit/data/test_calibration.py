from pathlib import Path

import pytest
import torch

from impq.data import calibration_text, sample_windows, tokenize, wikitext2_test_text

IDS = torch.arange(10_000)


def test_same_seed_same_tokens() -> None:
    assert torch.equal(sample_windows(IDS, 8, 64, seed=1), sample_windows(IDS, 8, 64, seed=1))


def test_other_seed_other_tokens() -> None:
    assert not torch.equal(sample_windows(IDS, 8, 64, seed=1), sample_windows(IDS, 8, 64, seed=2))


def test_windows_are_contiguous_slices() -> None:
    windows = sample_windows(IDS, 5, 32, seed=0)
    assert windows.shape == (5, 32)
    assert torch.equal(windows[:, 1:] - windows[:, :-1], torch.ones(5, 31, dtype=torch.int64))


def test_too_short_text_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="fewer than one window"):
        sample_windows(torch.arange(10), 1, 64, seed=0)


def test_wikitext_rows_follow_the_hub_layout(data_root: Path) -> None:
    text = wikitext2_test_text(data_root)
    assert text.startswith("\n\n = Robert Boulter = \n")
    assert len(text.split("\n\n")) >= 4358


def test_calibration_never_comes_from_the_test_split(data_root: Path) -> None:
    with pytest.raises(ValueError, match="evaluation split"):
        calibration_text(str(data_root / "wikitext-2-raw" / "wiki.test.raw"), data_root)
    heldout = calibration_text("heldout", data_root)
    assert heldout[:500] not in wikitext2_test_text(data_root)


def test_unknown_calibration_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a known source"):
        calibration_text(str(tmp_path / "missing.txt"), None)


def test_tokenize_adds_no_special_tokens(reference_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(reference_model_dir)
    ids = tokenize(tok, "hello world")
    assert ids.dtype == torch.int64 and ids.ndim == 1
    assert ids[0].item() != tok.bos_token_id
