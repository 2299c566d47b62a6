"""Tiny randomly initialised models of many architectures, for tests.

:data:`TINY_ARCHITECTURES` have a built-in layout; :data:`TINY_INFERRED_ARCHITECTURES`
have none and go through layout inference: Gemma-3 (sliding and full attention layers),
Phi-3 (fused ``qkv_proj`` and ``gate_up_proj``), OLMo-2, Qwen2-MoE (with a shared expert)
and OLMoE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    LlamaConfig,
    Olmo2Config,
    OlmoeConfig,
    Phi3Config,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2MoeConfig,
    Qwen3Config,
)

from impq.models.experts import unfuse_experts

__all__ = [
    "TINY_ARCHITECTURES",
    "TINY_INFERRED_ARCHITECTURES",
    "TINY_SLIDING_WINDOW",
    "tiny_config",
    "tiny_model",
]

_COMMON: dict[str, Any] = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=512,
)
_TOKENS: dict[str, Any] = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
"""Special token ids inside the tiny vocabulary (some families default to ids beyond it)."""
_MOE: dict[str, Any] = dict(num_experts=4, num_experts_per_tok=2)
TINY_SLIDING_WINDOW = 8
"""Window of the sliding-attention layers of the tiny Gemma-3 (shorter than test inputs)."""


_Builder = Callable[[int, dict[str, Any]], PretrainedConfig]
"""``(num_layers, sizes) -> config``; ``sizes`` are :data:`_COMMON` with the overrides."""


def _gemma3(n: int, sizes: dict[str, Any]) -> PretrainedConfig:
    kinds = ["sliding_attention", "full_attention"]
    return Gemma3TextConfig(
        num_hidden_layers=n,
        layer_types=[kinds[i % 2] for i in range(n)],
        sliding_window=TINY_SLIDING_WINDOW,
        **_TOKENS,
        **sizes,
    )


def _qwen2_moe(n: int, sizes: dict[str, Any]) -> PretrainedConfig:
    return Qwen2MoeConfig(
        num_hidden_layers=n,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=64,
        tie_word_embeddings=False,
        **_MOE,
        **_TOKENS,
        **sizes,
    )


def _simple(cls: Callable[..., PretrainedConfig], **extra: Any) -> _Builder:
    def make(n: int, sizes: dict[str, Any]) -> PretrainedConfig:
        return cls(num_hidden_layers=n, **extra, **sizes)

    return make


_CONFIGS: dict[str, _Builder] = {
    "llama": _simple(LlamaConfig, tie_word_embeddings=False),
    "gemma2": _simple(Gemma2Config, sliding_window=64),
    "qwen3": _simple(Qwen3Config, tie_word_embeddings=False),
    "gemma3_text": _gemma3,
    "phi3": _simple(Phi3Config, tie_word_embeddings=False, **_TOKENS),
    "olmo2": _simple(Olmo2Config, tie_word_embeddings=False, **_TOKENS),
    "qwen2_moe": _qwen2_moe,
    "olmoe": _simple(OlmoeConfig, tie_word_embeddings=False, **_MOE, **_TOKENS),
}

TINY_ARCHITECTURES = ("llama", "gemma2", "qwen3")
"""Families with a built-in layout."""

TINY_INFERRED_ARCHITECTURES = ("gemma3_text", "phi3", "olmo2", "qwen2_moe", "olmoe")
"""Families without one: their layout is inferred."""


def tiny_config(arch: str, num_layers: int = 4, **overrides: Any) -> PretrainedConfig:
    """A small config of architecture ``arch`` (one of the two tuples above).

    ``overrides`` replace the shared sizes (e.g. ``vocab_size=4096``, or
    ``hidden_size=256`` for llama.cpp's K-quants, whose rows must be a multiple of 256).
    """
    if arch not in _CONFIGS:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose from {sorted(_CONFIGS)}")
    return _CONFIGS[arch](num_layers, {**_COMMON, **overrides})


def tiny_model(arch: str, num_layers: int = 4, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A tiny random model of ``arch`` in eval mode, the same for the same seed.

    Like :func:`impq.models.load_model`, fused experts come split into ``nn.Linear``.
    """
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, num_layers, **overrides)).eval()
    unfuse_experts(model)
    return model
