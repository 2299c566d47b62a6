"""Evaluation text, calibration text and calibration sampling."""

from impq.data.calibration import (
    BOS_KEY,
    bos_of,
    bos_token,
    sample_windows,
    tokenize,
    without_bos,
)
from impq.data.text import calibration_text, wikitext2_test_text

__all__ = [
    "BOS_KEY",
    "bos_of",
    "bos_token",
    "calibration_text",
    "sample_windows",
    "tokenize",
    "wikitext2_test_text",
    "without_bos",
]
