"""Stage ``prepare``: tokenized calibration set and evaluation tokens, as artifacts."""

from __future__ import annotations

import logging
from pathlib import Path

from impq.artifacts import fingerprint, write_tensors
from impq.config import Params
from impq.data import calibration_text, sample_windows, tokenize, wikitext2_test_text
from impq.models import load_tokenizer
from impq.pipeline.paths import calibration_path, eval_tokens_path

__all__ = ["calibration_path", "eval_tokens_path", "run"]

log = logging.getLogger(__name__)


def run(params: Params) -> list[Path]:
    """Tokenize the evaluation split and draw the calibration set; return the artifacts."""
    cal = params.data.calibration
    root = params.data.resolved_root()
    tokenizer = load_tokenizer(params.model)

    eval_text = wikitext2_test_text(root)
    eval_ids = tokenize(tokenizer, eval_text)
    cal_text = calibration_text(cal.source, root)
    if cal_text.strip() and cal_text.strip()[:2000] in eval_text:
        raise ValueError("calibration text overlaps the evaluation split; choose another source")
    cal_ids = sample_windows(tokenize(tokenizer, cal_text), cal.n_samples, cal.seqlen, cal.seed)

    eval_meta = {
        "dataset": "wikitext-2-raw-v1/test",
        "join": "\\n\\n",
        "model": params.model.source,
    }
    out_eval = write_tensors(
        eval_tokens_path(params),
        {"input_ids": eval_ids},
        {**eval_meta, "fingerprint": fingerprint(eval_ids)},
    )
    out_cal = write_tensors(
        calibration_path(params),
        {"input_ids": cal_ids},
        {
            "source": cal.source,
            "seed": str(cal.seed),
            "model": params.model.source,
            "fingerprint": fingerprint(cal_ids),
        },
    )
    log.info("eval: %d tokens; calibration: %s", eval_ids.numel(), tuple(cal_ids.shape))
    return [out_eval, out_cal]
