"""Tiny randomly initialised models of each supported architecture, for tests."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    Qwen3Config,
)

__all__ = ["TINY_ARCHITECTURES", "tiny_config", "tiny_model"]

TINY_ARCHITECTURES = ("llama", "gemma2", "qwen3")

_COMMON: dict[str, Any] = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
)


def tiny_config(arch: str, num_layers: int = 4, **overrides: Any) -> PretrainedConfig:
    """A small config of architecture ``arch`` (llama, gemma2 or qwen3).

    ``overrides`` replace the shared sizes (e.g. ``hidden_size=256`` for llama.cpp's
    K-quants, whose rows must be a multiple of 256).
    """
    sizes = {**_COMMON, **overrides}
    if arch == "llama":
        return LlamaConfig(num_hidden_layers=num_layers, tie_word_embeddings=False, **sizes)
    if arch == "gemma2":
        return Gemma2Config(num_hidden_layers=num_layers, sliding_window=64, **sizes)
    if arch == "qwen3":
        return Qwen3Config(num_hidden_layers=num_layers, tie_word_embeddings=False, **sizes)
    raise ValueError(f"unknown tiny architecture {arch!r}; choose from {TINY_ARCHITECTURES}")


def tiny_model(arch: str, num_layers: int = 4, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A tiny random model of ``arch`` in eval mode, the same for the same seed."""
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, num_layers, **overrides)).eval()
