"""Quantization backends (Quanto, HQQ, GPTQ) behind one protocol."""

from impq.backends.base import BACKENDS, Backend, UnsupportedError, get_backend

__all__ = ["BACKENDS", "Backend", "UnsupportedError", "get_backend"]
