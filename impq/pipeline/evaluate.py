"""Stage ``evaluate``: WikiText-2 perplexity of the unquantized model."""

from __future__ import annotations

import logging

from impq.artifacts import write_json
from impq.config import Params
from impq.eval import PerplexityResult, perplexity
from impq.models import load_model
from impq.pipeline.paths import float_metrics_path
from impq.pipeline.prepare import read_eval_tokens

__all__ = ["float_metrics_path", "run"]

log = logging.getLogger(__name__)


def run(params: Params) -> PerplexityResult:
    """Evaluate the float model and write ``metrics/float.json``."""
    tokens = read_eval_tokens(params)
    model = load_model(params.model)
    ev = params.eval
    result = perplexity(model, tokens.ids, ev.seqlen, ev.batch_size, ev.max_windows, bos=tokens.bos)
    write_json(float_metrics_path(params), result.as_metrics(), versioned=False)
    log.info("float perplexity %.3f over %d windows", result.ppl, result.n_windows)
    return result
