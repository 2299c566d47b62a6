"""dequantize_weight: the precomputed views at each precision that SPQE works with."""

from __future__ import annotations

import itertools

import pytest
import torch

from impq.backends import UnsupportedError, get_backend

BACKENDS = ["quanto", "hqq"]
UNSUPPORTED = {"quanto": 3, "hqq": 5}


def _weight(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(96, 128, generator=g).to(dtype)


@pytest.mark.parametrize("name", BACKENDS)
def test_error_shrinks_with_bits(name: str) -> None:
    backend = get_backend(name)
    w = _weight()
    bits = sorted(backend.supported_bits)
    err = [(backend.dequantize_weight(w, b, 64) - w).pow(2).mean().item() for b in bits]
    assert all(a > b for a, b in itertools.pairwise(err)) and err[-1] > 0


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shape_dtype_device_kept(name: str, dtype: torch.dtype) -> None:
    w = _weight(dtype)
    out = get_backend(name).dequantize_weight(w, 2, 32)
    assert out.shape == w.shape and out.dtype == dtype and out.device == w.device


@pytest.mark.parametrize("name", BACKENDS)
def test_deterministic(name: str) -> None:
    backend = get_backend(name)
    w = _weight()
    assert torch.equal(backend.dequantize_weight(w, 2, 64), backend.dequantize_weight(w, 2, 64))


@pytest.mark.parametrize("name", BACKENDS)
def test_at_most_2_to_the_bits_levels_per_group(name: str) -> None:
    """Per group of 64 weights; quanto's 8-bit type has one scale per row instead."""
    w = _weight()
    backend = get_backend(name)
    for bits in sorted(backend.supported_bits):
        out = backend.dequantize_weight(w, bits, 64)
        groups = out.reshape(-1, 128 if (name, bits) == ("quanto", 8) else 64)
        assert max(len(torch.unique(g)) for g in groups) <= 2**bits


@pytest.mark.parametrize("name", BACKENDS)
def test_rejects_what_it_cannot_do(name: str) -> None:
    backend = get_backend(name)
    with pytest.raises(UnsupportedError, match="bits"):
        backend.dequantize_weight(_weight(), UNSUPPORTED[name], 64)
    with pytest.raises(UnsupportedError, match="group size"):
        backend.dequantize_weight(_weight(), 2, 48 + 1)


@pytest.mark.parametrize("name", BACKENDS)
def test_the_view_is_the_weight_the_quantized_model_holds(name: str) -> None:
    """What SPQE sees of a block at each precision is what the backend's model computes with
    (HQQ's view is dequantized in float16, HQQ's default, the model in its own dtype: the
    same to float16 rounding)."""
    from impq.models import block_linears
    from impq.models.tiny import tiny_model

    backend = get_backend(name)
    for bits in sorted(backend.supported_bits):
        model = tiny_model("llama", num_layers=1)
        weight = block_linears(model, 0)["mlp.down_proj"].weight.detach().clone()
        view = backend.dequantize_weight(weight, bits, 32)
        module = block_linears(backend.quantize(model, {0: bits}, 32), 0)["mlp.down_proj"]
        held = module.weight.dequantize() if name == "quanto" else module.dequantize()
        rtol = 1e-3 if name == "hqq" else 0.0
        torch.testing.assert_close(held.float(), view.float(), rtol=rtol, atol=1e-6)
