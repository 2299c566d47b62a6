"""The backend protocol and its registry.

A backend turns a float model into a mixed-precision one under a per-block assignment
``{block index: bits}``. Heavy libraries are imported lazily inside each backend module,
so listing or choosing a backend costs nothing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

__all__ = [
    "BACKENDS",
    "Backend",
    "UnsupportedError",
    "check_bits",
    "check_group_size",
    "get_backend",
]


class UnsupportedError(ValueError):
    """A backend was asked for a bit width, architecture or device it cannot handle."""


def check_bits(backend: str, bits: int, supported: frozenset[int]) -> None:
    """Raise :class:`UnsupportedError` unless ``bits`` is one of ``supported``."""
    if bits not in supported:
        raise UnsupportedError(
            f"backend {backend!r} stores weights at {sorted(supported)} bits, not {bits}"
        )


def check_group_size(backend: str, weight: torch.Tensor, group_size: int) -> None:
    """Raise :class:`UnsupportedError` unless ``group_size`` divides every weight row."""
    if weight.ndim != 2:
        raise UnsupportedError(
            f"backend {backend!r} quantizes 2-D linear weights, got shape {tuple(weight.shape)}"
        )
    in_features = weight.shape[1]
    if group_size <= 0 or in_features % group_size:
        raise UnsupportedError(
            f"backend {backend!r} needs a group size dividing the input width {in_features}, "
            f"got {group_size}; choose a divisor of every linear's in_features"
        )


@runtime_checkable
class Backend(Protocol):
    """What every quantization backend offers."""

    name: str
    supported_bits: frozenset[int]

    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` quantized at ``bits`` and dequantized back (same shape and dtype).

        This is how SPQE sees a block at a given precision without re-quantizing it
        for every coalition.
        """
        ...

    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """Quantize ``model``'s decoder blocks in place under ``assignment``; return it."""
        ...

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes that the quantized linear layers of the blocks really occupy."""
        ...

    def save(self, model: nn.Module, path: Path) -> None:
        """Write a quantized model so that :meth:`load` restores it."""
        ...

    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Read back a model written by :meth:`save`."""
        ...


BACKENDS: dict[str, str] = {
    "quanto": "impq.backends.quanto:QuantoBackend",
    "hqq": "impq.backends.hqq:HqqBackend",
    "gptq": "impq.backends.gptq:GptqBackend",
}
"""Backend name -> ``module:class``; the one place where backends are registered."""


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
