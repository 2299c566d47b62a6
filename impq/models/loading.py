"""Load a causal LM and its tokenizer from a local directory, a GGUF file or the hub."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from impq.config import ConfigError, ModelConfig
from impq.models.experts import _is_fused_experts, unfuse_experts
from impq.models.layout import LayerLayout, LayoutError, declare_layout, get_layout

__all__ = ["check_layout", "load_model", "load_tokenizer", "resolve_device"]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(device)


def _source_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    path = Path(cfg.source).expanduser()
    looks_local = path.is_absolute() or cfg.source.startswith((".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise FileNotFoundError(
            f"model.source: {cfg.source} is not a directory; give a local checkpoint folder "
            "(with config.json) or a hub id such as 'HuggingFaceTB/SmolLM2-135M'"
        )
    kwargs: dict[str, Any] = {}
    if cfg.gguf_file:
        kwargs["gguf_file"] = cfg.gguf_file
    return kwargs


def check_layout(cfg: ModelConfig) -> None:
    """Fail before any model work when ``cfg.layout`` does not fit the model.

    The model is built from its config on the meta device: no weights are read. A model
    with fused experts is checked only when it loads (its split needs the weights).

    Raises:
        ConfigError: ``cfg.layout`` does not fit (the message lists what exists).
    """
    if cfg.layout is None:
        return
    config = AutoConfig.from_pretrained(cfg.source, **_source_kwargs(cfg))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    if any(_is_fused_experts(m) for m in model.modules()):
        return
    try:
        declare_layout(model, LayerLayout(cfg.layout.blocks, tuple(cfg.layout.linears)))
    except LayoutError as err:
        raise ConfigError(f"model.layout: {err}") from None


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The tokenizer that belongs to ``cfg.source``."""
    return AutoTokenizer.from_pretrained(cfg.source, **_source_kwargs(cfg))


def load_model(cfg: ModelConfig) -> PreTrainedModel:
    """Load ``cfg.source`` in eval mode, in ``cfg.dtype``, on ``cfg.device``.

    Fused mixture-of-experts weights are split into one ``nn.Linear`` per expert
    projection (:func:`impq.models.unfuse_experts`), and the layer layout is resolved
    (``cfg.layout`` when declared) and logged.

    Raises:
        ConfigError: ``cfg.layout`` does not fit the model (the message lists what exists).
        LayoutError: no layout is declared and none can be inferred.
    """
    device = resolve_device(cfg.device)
    model = AutoModelForCausalLM.from_pretrained(
        cfg.source, dtype=_DTYPES[cfg.dtype], **_source_kwargs(cfg)
    )
    if cfg.gguf_file:  # the weights were dequantized to float on load
        model.config.quantization_config = None
        model.hf_quantizer = None  # type: ignore[assignment]
    log.info("loaded %s (%s) on %s", cfg.source, cfg.dtype, device)
    unfuse_experts(model)
    if cfg.layout is not None:
        try:
            declare_layout(model, LayerLayout(cfg.layout.blocks, tuple(cfg.layout.linears)))
        except LayoutError as err:
            raise ConfigError(f"model.layout: {err}") from None
    get_layout(model)
    model.to(device)  # type: ignore[arg-type]
    return model.eval()
