"""optimum-quanto backend: qint2, qint4 or qint8 weights per decoder block, frozen.

optimum-quanto's integer weight types are qint2, qint4 and qint8: it has no 3-bit type,
so this backend stores 2, 4 and 8 bits and refuses 3 (the HQQ, GPTQ and llama.cpp
backends store 3-bit blocks). qint8 is quanto's symmetric per-row type: int8 codes and
one scale per output row, no shift and no groups (quanto refuses a group size at 8 bits),
so an 8-bit block ignores ``group_size`` and :class:`QuantoFootprint` counts its rows.

At 2 and 4 bits quanto picks its own group size (128, or a smaller multiple of 32 dividing the input
width; one group per row when the input is 128 wide or less); this backend overrides it
with the requested one before freezing, so the stored scales and shifts really are per
``group_size`` weights. Quanto keeps scales and shifts in the weight's dtype and a
quantized linear computes in that dtype, so a float32 model stores 8 bytes of metadata
per group (a 16-bit model 4): :meth:`QuantoBackend.footprint` says so, and the budget of
a quanto model is counted in those bytes.

Checkpoints are quanto's own layout (``QuantizedModelForCausalLM.save_pretrained``:
``config.json``, ``model.safetensors``, ``quanto_qmap.json``). Quanto's qmap names each
module's qtype but not its group size, and ``QuantizedModelForCausalLM.from_pretrained``
re-creates every module with quanto's own group size (it fails with a shape mismatch
when that differs). So each qmap entry also carries ``group_size`` (ignored by quanto) and
:meth:`QuantoBackend.load` sets it before loading the tensors, with quanto's public API
only (``quantize(include=...)``, ``weight_group_size``, ``load_state_dict``), as the
README shows.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from impq.backends.base import assigned_linears, check_bits, check_group_size, stored_tensor_bytes
from impq.footprint import Footprint
from impq.models import decoder_blocks, get_layout, unfuse_experts

__all__ = ["QMAP_FILE", "QuantoBackend", "QuantoFootprint"]

log = logging.getLogger(__name__)

QMAP_FILE = "quanto_qmap.json"
"""Quanto's quantization map: module name -> qtypes (and here: group size)."""

_STORED_EXTRA = ("input_scale", "output_scale")
"""State-dict tensors of a quanto linear beside its ``weight.*`` tensors."""


_NO_GROUPS_BITS = 8
"""qint8 weights have one symmetric scale per output row instead of groups."""

_WHY = "optimum-quanto's weight types are qint2, qint4 and qint8: it has no 3-bit type"
"""Why quanto refuses the bits it refuses (in the error, beside the backends that store them)."""


def _qtype(bits: int) -> Any:
    from optimum.quanto import qint2, qint4, qint8

    return {2: qint2, 4: qint4, 8: qint8}[bits]


@dataclass(frozen=True)
class QuantoFootprint(Footprint):
    """Packed codes, a scale and a shift per group and two scalar scales per linear; at 8
    bits (qint8) one scale per output row and no shift instead."""

    def scales(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """One scale per group, or per output row at 8 bits."""
        if bits == _NO_GROUPS_BITS:
            return out_features * self.scale_bytes
        return super().scales(out_features, in_features, bits, group_size)

    def zeros(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """One shift per group; none at 8 bits (qint8 is symmetric)."""
        if bits == _NO_GROUPS_BITS:
            return 0
        return super().zeros(out_features, in_features, bits, group_size)


def _quantize_modules(model: nn.Module, plan: dict[str, tuple[int, int | None]]) -> None:
    """Swap the named linears for quanto modules at (bits, group size) (unfrozen); the
    group size is None for 8-bit modules."""
    from optimum.quanto import quantize

    for bits in sorted({b for b, _ in plan.values()}):
        names = [name for name, (b, _) in plan.items() if b == bits]
        quantize(model, weights=_qtype(bits), include=names)
    for name, (_, group_size) in plan.items():
        module: Any = model.get_submodule(name)
        module.weight_group_size = group_size
        module.forward = _inference_mode_safe(module.forward)


def _group_size(bits: int, group_size: int) -> int | None:
    """The group size quanto stores at ``bits``: none at 8 bits."""
    return None if bits == _NO_GROUPS_BITS else group_size


def _inference_mode_safe(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward`` run outside inference mode (under no_grad) when called inside it.

    A view of a quanto weight (``t()``) inside ``torch.inference_mode`` fails with
    "Cannot set version_counter for inference tensor" when the weight was made outside
    it (pytorch/pytorch#170419, optimum-quanto#304); perplexity runs in inference mode.
    """

    @functools.wraps(forward)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_inference_mode_enabled():
            return forward(*args, **kwargs)
        with torch.inference_mode(False), torch.no_grad():
            return forward(*args, **kwargs)

    return wrapped


def _quantized_modules(model: nn.Module) -> dict[str, Any]:
    """Quanto modules with frozen (quantized) weights inside the decoder blocks."""
    from optimum.quanto import QModuleMixin, QTensor

    prefix = get_layout(model).blocks + "."
    decoder_blocks(model)
    return {
        name: m
        for name, m in model.named_modules()
        if name.startswith(prefix)
        and isinstance(m, QModuleMixin)
        and isinstance(getattr(m, "weight", None), QTensor)
    }


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a (possibly sharded) safetensors checkpoint folder."""
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(str(path / shard)).items()}
    single = path / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{single}: missing; is {path} a quanto checkpoint?")
    return load_file(str(single))


def _shared_keys(model: nn.Module) -> set[str]:
    """State-dict keys whose tensor is the same parameter as an earlier key (tied)."""
    seen: set[int] = set()
    shared = set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        ident = id(tensor)
        if ident in seen:
            shared.add(key)
        seen.add(ident)
    return shared


class QuantoBackend:
    """Quantizes the linears of each block with optimum-quanto at 2, 4 or 8 bits (it has
    no 3-bit type)."""

    name = "quanto"
    supported_bits = frozenset({2, 4, 8})
    data_free = True

    @torch.no_grad()
    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` through quanto's group-wise affine quantizer at ``bits`` (at 8 bits
        its symmetric per-row one), dequantized."""
        check_bits(self.name, bits, self.supported_bits, _WHY)
        check_group_size(self.name, weight, group_size)
        from optimum.quanto.tensor.optimizers import AbsmaxOptimizer, MaxOptimizer
        from optimum.quanto.tensor.weights import quantize_weight

        qtype = _qtype(bits)
        groups = _group_size(bits, group_size)
        if groups is None:
            scale, shift = AbsmaxOptimizer()(weight, qtype=qtype, axis=0), None
        else:
            scale, shift = MaxOptimizer()(weight, qtype=qtype, axis=0, group_size=groups)
        q = quantize_weight(
            weight,
            qtype=qtype,
            axis=0,
            scale=scale,
            shift=shift,
            group_size=groups,
            optimized=False,
        )
        return q.dequantize().to(dtype=weight.dtype, device=weight.device).reshape(weight.shape)

    @torch.no_grad()
    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """Quantize the assigned blocks' linears in place and freeze them; return ``model``.

        ``calibration`` is not used: quanto's weight quantization is data-free.
        """
        from optimum.quanto import freeze

        targets = assigned_linears(
            self.name, model, assignment, group_size, self.supported_bits, _WHY
        )
        _quantize_modules(
            model,
            {name: (bits, _group_size(bits, group_size)) for name, (_, bits) in targets.items()},
        )
        freeze(model)
        log.info("quanto: quantized %d linears in %d blocks", len(targets), len(assignment))
        return model

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes of the packed codes, scales, shifts and input/output scales of every
        frozen quanto linear."""
        return stored_tensor_bytes(
            _quantized_modules(model).values(),
            lambda key: key.startswith("weight") or key in _STORED_EXTRA,
        )

    def footprint(self, model: nn.Module) -> Footprint:
        """:class:`QuantoFootprint` with scales and shifts in the model's float dtype."""
        width = next(model.parameters()).element_size()
        return QuantoFootprint(scale_bytes=width, zero_bytes=width, linear_bytes=2 * width)

    def save(self, model: nn.Module, path: Path) -> None:
        """Write quanto's checkpoint layout, the group size in each qmap entry (null at 8
        bits)."""
        from optimum.quanto import QuantizedModelForCausalLM

        modules = _quantized_modules(model)
        if not modules:
            raise ValueError("the model has no frozen quanto linears; quantize it first")
        path = Path(path)
        QuantizedModelForCausalLM(model).save_pretrained(str(path))
        qmap = json.loads((path / QMAP_FILE).read_text())
        for name, module in modules.items():
            groups = module.weight_group_size
            qmap[name]["group_size"] = None if groups is None else int(groups)
        (path / QMAP_FILE).write_text(json.dumps(qmap, indent=4) + "\n")

    @torch.no_grad()
    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Rebuild the model from its config, qmap and tensors with quanto's public API.

        Raises:
            FileNotFoundError: a file of the checkpoint is missing.
            ValueError: the tensors do not match the model the qmap describes.
        """
        from optimum.quanto import qtypes
        from transformers import AutoConfig, AutoModelForCausalLM

        path = Path(path)
        if not (path / QMAP_FILE).is_file():
            raise FileNotFoundError(f"{path / QMAP_FILE}: missing; is {path} a quanto checkpoint?")
        qmap = json.loads((path / QMAP_FILE).read_text())
        config = AutoConfig.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(config, "dtype", None))
        unfuse_experts(model)  # named as the quantized model was (impq.models.load_model)
        plan = {
            name: (
                int(qtypes[q["weights"]].bits),
                None if q["group_size"] is None else int(q["group_size"]),
            )
            for name, q in qmap.items()
        }
        _quantize_modules(model, plan)
        result = model.load_state_dict(_read_state(path), strict=False)
        model.tie_weights()
        missing = set(result.missing_keys) - _shared_keys(model)
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{path}: tensors do not match the model: missing {sorted(missing)[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        absent = [n for n in plan if n not in _quantized_modules(model)]
        if absent:
            raise ValueError(f"{path}: no quantized weights for {absent[:3]}")
        return model.to(device).eval()
