"""Model loading, layer layouts (built in, inferred or declared) and tiny test models."""

from impq.models.experts import ExpertLinears, unfuse_experts
from impq.models.layout import (
    LAYOUTS,
    LayerLayout,
    LayoutError,
    block_linears,
    block_param_counts,
    declare_layout,
    decoder_blocks,
    final_norm,
    get_layout,
    infer_layout,
)
from impq.models.loading import load_model, load_tokenizer, resolve_device

__all__ = [
    "LAYOUTS",
    "ExpertLinears",
    "LayerLayout",
    "LayoutError",
    "block_linears",
    "block_param_counts",
    "declare_layout",
    "decoder_blocks",
    "final_norm",
    "get_layout",
    "infer_layout",
    "load_model",
    "load_tokenizer",
    "resolve_device",
    "unfuse_experts",
]
