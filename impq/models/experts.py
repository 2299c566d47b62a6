"""Mixture-of-experts weights as one ``nn.Linear`` per expert projection.

transformers 5 stores the experts of a mixture-of-experts block (Qwen2-MoE, OLMoE,
Mixtral, Qwen3-MoE, ...) as two 3-D parameters, ``gate_up_proj`` (experts x 2I x H) and
``down_proj`` (experts x H x I), computed by a class decorated with
``use_experts_implementation``. No quantization backend quantizes a 3-D parameter, so
:func:`unfuse_experts` replaces each such module by :class:`ExpertLinears`: per expert
``e`` the modules ``e.gate_proj``, ``e.up_proj`` and ``e.down_proj``, the names of the
hub checkpoints, so the model saves and loads as before. The forward is the same math
(checked on a probe input for every module replaced); the router is untouched and stays
in float.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from impq.models.layout import LayoutError

__all__ = ["ExpertLinears", "unfuse_experts"]

log = logging.getLogger(__name__)


class _Expert(nn.Module):
    """One expert: ``down(act(gate(x)) * up(x))``, or ``down(act(up(x)))`` without a gate."""

    def __init__(
        self,
        gate: nn.Linear | None,
        up: nn.Linear,
        down: nn.Linear,
        act: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        super().__init__()
        if gate is not None:
            self.gate_proj = gate
        self.up_proj, self.down_proj = up, down
        self.act_fn = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up_proj(x)
        h = self.act_fn(self.gate_proj(x)) * h if hasattr(self, "gate_proj") else self.act_fn(h)
        out: torch.Tensor = self.down_proj(h)
        return out


class ExpertLinears(nn.Module):
    """The experts of one mixture-of-experts block, each of them plain ``nn.Linear`` modules.

    Called like the transformers experts module it replaces:
    ``(hidden_states (T, H), top_k_index (T, k), top_k_weights (T, k)) -> (T, H)``.
    """

    def __init__(self, experts: list[_Expert]) -> None:
        super().__init__()
        for e, expert in enumerate(experts):
            self.add_module(str(e), expert)
        self.num_experts = len(experts)

    def forward(
        self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ) -> torch.Tensor:
        out = torch.zeros_like(hidden_states)
        for e, expert in enumerate(self.children()):
            tokens, slot = torch.where(top_k_index == e)
            if tokens.numel() == 0:
                continue
            y = expert(hidden_states[tokens]) * top_k_weights[tokens, slot, None]
            out.index_add_(0, tokens, y.to(out.dtype))
        return out


def _is_fused_experts(module: nn.Module) -> bool:
    """A transformers experts module with 3-D weights (``use_experts_implementation``)."""
    weights = [getattr(module, n, None) for n in ("gate_up_proj", "up_proj", "down_proj")]
    return hasattr(module, "has_gate") and any(
        isinstance(w, nn.Parameter) and w.ndim == 3 for w in weights
    )


def _refusal(module: nn.Module) -> str | None:
    """Why ``module`` cannot be split exactly (None: it can)."""
    from transformers.integrations.moe import _default_apply_gate

    if getattr(module, "has_post_expert_norm", False):
        return "a norm after each expert"
    if getattr(module, "_is_expert_parallel", False):
        return "expert parallelism"
    if module.has_gate and not getattr(module, "is_concatenated", True):
        return "interleaved gate/up rows"
    if module.has_gate and getattr(type(module), "_apply_gate", None) is not _default_apply_gate:
        return "its own gating function"
    return None


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> nn.Linear:
    w = (weight.t() if transposed else weight).detach().clone().contiguous()
    linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(w, requires_grad=False)
    if bias is not None:
        linear.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    return linear


def _split(module: Any) -> ExpertLinears:
    transposed = bool(getattr(module, "is_transposed", False))
    bias = bool(getattr(module, "has_bias", False))
    experts = []
    for e in range(module.down_proj.shape[0]):
        down = _linear(module.down_proj[e], module.down_proj_bias[e] if bias else None, transposed)
        if module.has_gate:
            gate_up = module.gate_up_proj[e]
            gate_up_bias = module.gate_up_proj_bias[e] if bias else None
            rows = gate_up.shape[-1 if transposed else 0] // 2
            halves = gate_up.split(rows, dim=-1 if transposed else 0)
            biases = gate_up_bias.split(rows) if gate_up_bias is not None else (None, None)
            gate = _linear(halves[0], biases[0], transposed)
            up = _linear(halves[1], biases[1], transposed)
        else:
            gate = None
            up = _linear(module.up_proj[e], module.up_proj_bias[e] if bias else None, transposed)
        experts.append(_Expert(gate, up, down, module.act_fn))
    return ExpertLinears(experts)


@torch.no_grad()
def _check_same(name: str, fused: nn.Module, split: ExpertLinears) -> None:
    """Raise unless ``split`` computes what ``fused`` does on a probe routing every expert."""
    weight = cast(nn.Linear, split.get_submodule("0.down_proj")).weight
    hidden = int(weight.shape[0])
    n, k = max(8, split.num_experts), min(2, split.num_experts)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, hidden, generator=gen).to(weight)
    index = (torch.arange(n * k).reshape(n, k) % split.num_experts).to(weight.device)
    weights = torch.rand(n, k, generator=gen).to(weight)
    expected, got = fused(x, index, weights), split(x, index, weights)
    if not torch.allclose(expected, got, rtol=1e-3, atol=1e-4 * float(expected.abs().max())):
        raise LayoutError(
            f"{name} ({type(fused).__name__}): its experts split into nn.Linear modules do "
            "not compute what the fused module does; impq cannot quantize its experts. "
            "Declare model.layout.linears without them to keep them in float."
        )


def unfuse_experts(model: nn.Module) -> int:
    """Replace every fused transformers experts module of ``model`` by :class:`ExpertLinears`.

    Returns:
        How many modules were replaced (0 for a model without fused experts).

    Raises:
        LayoutError: an experts module uses a variant that cannot be split exactly
            (named in the message, with the variant).
    """
    targets = [(n, m) for n, m in model.named_modules() if _is_fused_experts(m)]
    for name, module in targets:
        why = _refusal(module)
        if why is not None:
            raise LayoutError(
                f"{name} ({type(module).__name__}) stores its experts as fused 3-D tensors "
                f"with {why}, which impq cannot split into nn.Linear modules; declare "
                "model.layout.linears without them to keep them in float"
            )
        split = _split(module)
        _check_same(name, module, split)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, split)
    if targets:
        log.info(
            "split the fused experts of %d blocks into one nn.Linear per expert projection "
            "(%s, ...)",
            len(targets),
            targets[0][0],
        )
    return len(targets)
