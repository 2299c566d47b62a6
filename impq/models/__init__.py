"""Model loading and declarative per-architecture layer layouts."""

from impq.models.layout import (
    LAYOUTS,
    LayerLayout,
    UnknownArchitectureError,
    block_linears,
    block_param_counts,
    decoder_blocks,
    get_layout,
    register_layout,
)
from impq.models.loading import load_model, load_tokenizer, resolve_device

__all__ = [
    "LAYOUTS",
    "LayerLayout",
    "UnknownArchitectureError",
    "block_linears",
    "block_param_counts",
    "decoder_blocks",
    "get_layout",
    "load_model",
    "load_tokenizer",
    "register_layout",
    "resolve_device",
]
