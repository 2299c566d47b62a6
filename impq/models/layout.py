"""Declarative layer layouts: where an architecture keeps its decoder blocks and linears.

A layout is data, not code: adding an architecture means adding one entry to
``LAYOUTS`` (or calling :func:`register_layout`), keyed by ``config.model_type``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = [
    "LAYOUTS",
    "LayerLayout",
    "UnknownArchitectureError",
    "block_linears",
    "block_param_counts",
    "decoder_blocks",
    "get_layout",
    "register_layout",
]


@dataclass(frozen=True)
class LayerLayout:
    """Where the decoder blocks are and which linear modules each block holds.

    Attributes:
        blocks: dotted path from the model to the ``nn.ModuleList`` of decoder blocks.
        linears: dotted paths, relative to one block, of the quantizable linear modules.
    """

    blocks: str
    linears: tuple[str, ...]


_LLAMA_LIKE = LayerLayout(
    blocks="model.layers",
    linears=(
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ),
)

LAYOUTS: dict[str, LayerLayout] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
}


class UnknownArchitectureError(ValueError):
    """The model's architecture has no declared layer layout."""


def register_layout(model_type: str, layout: LayerLayout) -> None:
    """Declare the layout of an architecture (keyed by ``config.model_type``)."""
    LAYOUTS[model_type] = layout


def get_layout(model: nn.Module) -> LayerLayout:
    """The layout of ``model``'s architecture.

    Raises:
        UnknownArchitectureError: no layout is declared; the message says how to add one.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LAYOUTS:
        raise UnknownArchitectureError(
            f"no layer layout for model_type {model_type!r}; known: {sorted(LAYOUTS)}. "
            "Declare one with impq.models.register_layout(model_type, LayerLayout("
            "blocks='model.layers', linears=('self_attn.q_proj', ...)))."
        )
    return LAYOUTS[model_type]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks, in order."""
    layout = get_layout(model)
    blocks = model.get_submodule(layout.blocks)
    if not isinstance(blocks, nn.ModuleList):
        raise UnknownArchitectureError(
            f"{layout.blocks} of {type(model).__name__} is a {type(blocks).__name__}, "
            "not the ModuleList of decoder blocks the layout declares"
        )
    return blocks


def block_linears(model: nn.Module, index: int) -> dict[str, nn.Module]:
    """The quantizable linear modules of block ``index``, by their path inside the block."""
    layout = get_layout(model)
    block = decoder_blocks(model)[index]
    return {name: block.get_submodule(name) for name in layout.linears}


def block_param_counts(model: nn.Module) -> list[int]:
    """Quantizable parameters (linear weights) of each decoder block."""
    return [
        sum(m.get_parameter("weight").numel() for m in block_linears(model, i).values())
        for i in range(len(decoder_blocks(model)))
    ]
