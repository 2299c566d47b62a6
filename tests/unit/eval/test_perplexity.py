import math

import pytest
import torch

from impq.eval import perplexity, windows
from impq.models.tiny import tiny_model


def _by_hand(model: torch.nn.Module, ids: torch.Tensor, seqlen: int) -> float:
    nlls = []
    for start in range(0, ids.numel() // seqlen * seqlen, seqlen):
        chunk = ids[start : start + seqlen].unsqueeze(0)
        with torch.no_grad():
            logp = torch.log_softmax(model(chunk).logits[0].double(), dim=-1)
        for t in range(seqlen - 1):
            nlls.append(-logp[t, chunk[0, t + 1]].item())
    return math.exp(sum(nlls) / len(nlls))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_perplexity_equals_exp_mean_nll_by_hand(batch_size: int) -> None:
    model = tiny_model("llama", num_layers=2, seed=1)
    ids = torch.randint(0, 256, (7 * 32 + 5,), generator=torch.Generator().manual_seed(0))
    result = perplexity(model, ids, seqlen=32, batch_size=batch_size, progress=False)
    assert result.n_windows == 7 and result.n_tokens == 7 * 31
    assert result.ppl == pytest.approx(_by_hand(model, ids, 32), rel=1e-6)  # float32 logits


def test_max_windows_limits_the_evaluation() -> None:
    ids = torch.arange(1000)
    assert windows(ids, 100, max_windows=3).shape == (3, 100)
    assert windows(ids, 100).shape == (10, 100)
    with pytest.raises(ValueError, match="do not fill one window"):
        windows(ids[:50], 100)


def test_non_finite_logits_give_non_finite_perplexity() -> None:
    model = tiny_model("llama", num_layers=1, seed=0)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    result = perplexity(model, torch.arange(64) % 256, seqlen=32, progress=False)
    assert math.isnan(result.ppl)


def test_window_nlls_average_to_the_mean_nll() -> None:
    model = tiny_model("llama", num_layers=2, seed=1)
    ids = torch.randint(0, 256, (5 * 32,), generator=torch.Generator().manual_seed(2))
    result = perplexity(model, ids, seqlen=32, batch_size=2, progress=False)
    assert len(result.window_nll) == 5
    assert sum(result.window_nll) / 5 == pytest.approx(result.mean_nll, rel=1e-12)
    first = perplexity(model, ids[:32], seqlen=32, progress=False)
    assert result.window_nll[0] == pytest.approx(first.mean_nll, rel=1e-9)
    assert "window_nll" not in result.as_metrics()
