"""Stage ``prepare``: tokenized calibration set and evaluation tokens, as artifacts.

The evaluation tokens are the whole test split, with no BOS; when the windows start with
one (:func:`impq.data.bos_token`) its id is in both artifacts' metadata
(:data:`impq.data.BOS_KEY`), and the calibration windows already hold it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import torch

from impq.artifacts import fingerprint, read_tensors, write_tensors
from impq.config import Params
from impq.data import (
    BOS_KEY,
    bos_of,
    bos_token,
    calibration_text,
    sample_windows,
    tokenize,
    wikitext2_test_text,
)
from impq.models import load_tokenizer
from impq.models.loading import check_layout
from impq.pipeline.paths import calibration_path, eval_tokens_path

__all__ = ["EvalTokens", "calibration_path", "eval_tokens_path", "read_eval_tokens", "run"]

log = logging.getLogger(__name__)


class EvalTokens(NamedTuple):
    """The evaluation tokens as stages read them.

    Attributes:
        ids: the test split's token ids, 1-D, no BOS.
        bos: the BOS id every window starts with, or None.
        fingerprint: what a result scored on them depends on (the ids, and the BOS).
    """

    ids: torch.Tensor
    bos: int | None
    fingerprint: str


def read_eval_tokens(params: Params) -> EvalTokens:
    """The ``prepare`` stage's evaluation tokens and the BOS their windows start with.

    Raises:
        FileNotFoundError: the artifact is missing (run ``prepare``).
    """
    tensors, meta = read_tensors(eval_tokens_path(params))
    ids, bos = tensors["input_ids"], bos_of(meta)
    fp = meta.get("fingerprint") or fingerprint(ids)
    return EvalTokens(ids, bos, fp if bos is None else f"{fp}/bos={bos}")


def run(params: Params) -> list[Path]:
    """Tokenize the evaluation split and draw the calibration set; return the artifacts.

    Raises:
        ConfigError: a declared ``model.layout`` does not fit the model (checked here,
            before any stage loads it).
    """
    check_layout(params.model)
    cal = params.data.calibration
    root = params.data.resolved_root()
    tokenizer = load_tokenizer(params.model)
    bos = bos_token(tokenizer, params.eval.add_bos)
    bos_meta = {} if bos is None else {BOS_KEY: str(bos)}

    eval_text = wikitext2_test_text(root)
    eval_ids = tokenize(tokenizer, eval_text)
    cal_text = calibration_text(cal.source, root)
    if cal_text.strip() and cal_text.strip()[:2000] in eval_text:
        raise ValueError("calibration text overlaps the evaluation split; choose another source")
    cal_ids = tokenize(tokenizer, cal_text)
    cal_ids = sample_windows(cal_ids, cal.n_samples, cal.seqlen, cal.seed, bos)

    eval_meta = {
        "dataset": "wikitext-2-raw-v1/test",
        "join": "\\n\\n",
        "model": params.model.source,
        **bos_meta,
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
            **bos_meta,
        },
    )
    log.info(
        "eval: %d tokens; calibration: %s; windows start with %s",
        eval_ids.numel(), tuple(cal_ids.shape), "no BOS" if bos is None else f"BOS {bos}",
    )  # fmt: skip
    return [out_eval, out_cal]
