"""Evaluation text, calibration text and calibration sampling."""

from impq.data.calibration import sample_windows, tokenize
from impq.data.text import calibration_text, wikitext2_test_text

__all__ = ["calibration_text", "sample_windows", "tokenize", "wikitext2_test_text"]
