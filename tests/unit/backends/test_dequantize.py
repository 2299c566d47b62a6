"""dequantize_weight: the precomputed 2- and 4-bit views SPQE works with."""

from __future__ import annotations

import pytest
import torch

from impq.backends import UnsupportedError, get_backend

BACKENDS = ["quanto", "hqq"]


def _weight(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(96, 128, generator=g).to(dtype)


@pytest.mark.parametrize("name", BACKENDS)
def test_error_shrinks_with_bits(name: str) -> None:
    backend = get_backend(name)
    w = _weight()
    err = {b: (backend.dequantize_weight(w, b, 64) - w).pow(2).mean().item() for b in (2, 4)}
    assert err[2] > err[4] > 0


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
    w = _weight()
    out = get_backend(name).dequantize_weight(w, 2, 64)
    groups = out.reshape(-1, 64)
    assert max(len(torch.unique(g)) for g in groups) <= 4


@pytest.mark.parametrize("name", BACKENDS)
def test_rejects_what_it_cannot_do(name: str) -> None:
    backend = get_backend(name)
    with pytest.raises(UnsupportedError, match="bits"):
        backend.dequantize_weight(_weight(), 3, 64)
    with pytest.raises(UnsupportedError, match="group size"):
        backend.dequantize_weight(_weight(), 2, 48 + 1)
