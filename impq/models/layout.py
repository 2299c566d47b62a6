"""Layer layouts: where a model keeps its decoder blocks and which linears each block holds.

A layout comes from one of three places, in this order:

1. **declared** for one model (``model.layout`` in params, see :func:`declare_layout`);
   it is stored in the model's config, so it travels with every checkpoint written;
2. **built in**: :data:`LAYOUTS`, the checked list of named families by ``model_type``;
3. **inferred** for any other causal LM: the blocks are the ``nn.ModuleList`` of the
   class the model names in ``_no_split_modules`` (else the longest ModuleList of blocks
   of one class under the base model); the linears of a block are every ``nn.Linear``
   inside it except routers (a path component ``gate``, ``router``, ``*_gate`` or
   ``*_router``), which stay in float.

The linears of a layout are ``fnmatch`` patterns relative to a block (an exact path is a
pattern too); a block holds the linear modules whose path matches one of them, so blocks
of one model may differ (dense and mixture-of-experts blocks). The resolved layout is
cached on the model and logged once, with where it came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, cast

from torch import nn

__all__ = [
    "LAYOUTS",
    "LayerLayout",
    "LayoutError",
    "block_linears",
    "block_param_counts",
    "declare_layout",
    "decoder_blocks",
    "final_norm",
    "get_layout",
    "infer_layout",
]

log = logging.getLogger(__name__)

CONFIG_KEY = "impq_layout"
"""Attribute of the model's config holding a declared layout (saved in config.json)."""

_CACHE = "_impq_layout"
_ROUTER_NAMES = ("gate", "router")


@dataclass(frozen=True)
class LayerLayout:
    """Where the decoder blocks are and which linear modules each block holds.

    Attributes:
        blocks: dotted path from the model to the ``nn.ModuleList`` of decoder blocks.
        linears: ``fnmatch`` patterns of dotted paths, relative to a block, of the
            quantizable linear modules (``mlp.experts.*.down_proj``; an exact path is a
            pattern too).
        source: where the layout came from ("declared", "built-in 'llama'", "inferred"),
            for log lines and error messages.
    """

    blocks: str
    linears: tuple[str, ...]
    source: str = "declared"


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
    source="built-in",
)

LAYOUTS: dict[str, LayerLayout] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
}
"""The named families, by ``config.model_type``; inference covers every other one."""


class LayoutError(ValueError):
    """No layer layout can be found for a model, or the declared one does not fit it."""


def _is_linear(module: nn.Module) -> bool:
    """An ``nn.Linear``, or a quantized module that took one's place."""
    if isinstance(module, nn.Linear):
        return True
    return isinstance(getattr(module, "in_features", None), int) and isinstance(
        getattr(module, "out_features", None), int
    )


def _is_router(path: str) -> bool:
    return any(
        part in _ROUTER_NAMES or part.endswith(tuple(f"_{n}" for n in _ROUTER_NAMES))
        for part in path.split(".")
    )


def _linears_in(block: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in block.named_modules() if name and _is_linear(m)}


def _module_lists(model: nn.Module) -> dict[str, nn.ModuleList]:
    """Every non-empty ModuleList of ``model`` whose elements share one class."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) and len({type(b) for b in m}) == 1
    }


def _describe_lists(lists: dict[str, nn.ModuleList]) -> str:
    return (
        ", ".join(f"{n} ({len(m)} x {type(m[0]).__name__})" for n, m in lists.items()) or "none"
    )


def _path_of(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    for name, m in model.named_modules():
        if m is target:
            return name
    return None


def _under(path: str, prefix: str | None) -> bool:
    return prefix is not None and (not prefix or path == prefix or path.startswith(prefix + "."))


def _infer_blocks(model: nn.Module) -> tuple[str, str]:
    """(path, why) of the decoder blocks of ``model``."""
    lists = _module_lists(model)
    no_split = set(getattr(model, "_no_split_modules", None) or ())
    named = {n: m for n, m in lists.items() if type(m[0]).__name__ in no_split}
    decoder: Any = None
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            decoder = get_decoder()
        except (AttributeError, NotImplementedError, ValueError):
            decoder = None
    decoder_path = _path_of(model, decoder)
    base_path = _path_of(model, getattr(model, "base_model", None))
    if named:
        candidates, why = named, "the class _no_split_modules names"
        in_decoder = {n: m for n, m in named.items() if _under(n, decoder_path)}
        candidates = in_decoder or candidates
    else:  # the outermost lists: not the experts or heads inside a block
        candidates = {n: m for n, m in lists.items() if _under(n, base_path)} or lists
        candidates = {
            n: m for n, m in candidates.items() if not any(n.startswith(o + ".") for o in lists)
        }
        why = "the longest ModuleList of one block class"
    if not candidates:
        raise LayoutError(
            f"cannot infer the decoder blocks of {type(model).__name__}: it has no "
            "ModuleList of blocks. Declare them in params: model.layout: {blocks: <path "
            "of the ModuleList>, linears: [<paths of linears inside a block>]}"
        )
    longest = max(len(m) for m in candidates.values())
    best = {n: m for n, m in candidates.items() if len(m) == longest}
    if len(best) > 1:
        raise LayoutError(
            f"cannot tell the decoder blocks of {type(model).__name__} apart: "
            f"{_describe_lists(best)}. Declare them in params: model.layout.blocks"
        )
    return next(iter(best)), why


def infer_layout(model: nn.Module) -> LayerLayout:
    """The layout inferred from the model's module tree (see the module docstring).

    Raises:
        LayoutError: no blocks can be told, the blocks hold no linears, or they hold
            fused 3-D weights (such as mixture-of-experts tensors) that no backend
            quantizes and that :func:`impq.models.unfuse_experts` could not split.
    """
    path, why = _infer_blocks(model)
    blocks = _blocks_at(model, path)
    names: dict[str, None] = {}
    for i, block in enumerate(blocks):
        fused = [n for n, p in block.named_parameters() if p.ndim >= 3]
        if fused:
            raise LayoutError(
                f"block {i} of {path} ({type(block).__name__}) stores {fused[:3]} as 3-D "
                "tensors (fused experts) that no backend quantizes; load the model with "
                "impq.models.load_model (which splits transformers' experts into one "
                "nn.Linear per expert), or declare model.layout.linears to quantize the "
                "other linears and keep these in float"
            )
        names.update((n, None) for n in _linears_in(block) if not _is_router(n))
    if not names:
        raise LayoutError(
            f"the blocks of {type(model).__name__} at {path} hold no nn.Linear to quantize "
            f"(their layers are {type(blocks[0]).__name__} children: "
            f"{[n for n, _ in blocks[0].named_children()]}); impq quantizes nn.Linear only"
        )
    return LayerLayout(blocks=path, linears=tuple(names), source=f"inferred ({why})")


def _check(model: nn.Module, layout: LayerLayout, linears: bool = True) -> None:
    """Raise :class:`LayoutError` unless ``layout`` fits ``model``, naming what exists.

    With ``linears`` false only the blocks are checked (a quantized checkpoint's layout
    was checked on the float model it was declared for).
    """
    where = f"{layout.source} layout of {type(model).__name__}"
    try:
        blocks = model.get_submodule(layout.blocks)
    except AttributeError:
        blocks = None
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        what = "does not exist" if blocks is None else f"is a {type(blocks).__name__}"
        raise LayoutError(
            f"{where}: blocks {layout.blocks!r} {what}, not a ModuleList of blocks; the "
            f"model's ModuleLists are: {_describe_lists(_module_lists(model))}"
        )
    if not linears:
        return
    if not layout.linears:
        raise LayoutError(f"{where}: linears is empty; name the linears of a block")
    found = [_linears_in(b) for b in blocks]
    for pattern in layout.linears:
        if not any(fnmatchcase(n, pattern) for names in found for n in names):
            try:
                other = type(blocks[0].get_submodule(pattern)).__name__
            except AttributeError:
                other = None
            what = f"is a {other}, not an nn.Linear" if other else "names no linear"
            raise LayoutError(
                f"{where}: linears entry {pattern!r} {what} in any block of {layout.blocks}; "
                f"the linears of block 0 are: {sorted(found[0]) or 'none'}"
            )
    for i, names in enumerate(found):
        if not any(fnmatchcase(n, p) for n in names for p in layout.linears):
            raise LayoutError(
                f"{where}: block {i} of {layout.blocks} holds none of the linears "
                f"{list(layout.linears)}; its linears are: {sorted(names) or 'none'}"
            )


def _blocks_at(model: nn.Module, path: str) -> nn.ModuleList:
    return cast(nn.ModuleList, model.get_submodule(path))


def _log(model: nn.Module, layout: LayerLayout) -> None:
    blocks = _blocks_at(model, layout.blocks)
    per_block = [len(block_linears_of(b, layout)) for b in blocks]
    counts = (
        str(per_block[0]) if len(set(per_block)) == 1 else f"{min(per_block)}-{max(per_block)}"
    )
    shown = list(layout.linears[:8]) + (["..."] if len(layout.linears) > 8 else [])
    float_2d = sorted(
        {
            n
            for b in blocks
            for n, p in b.named_parameters()
            if p.ndim >= 2 and not any(fnmatchcase(n.rpartition(".")[0], q) for q in layout.linears)
        }
    )
    log.info(
        "layout of %s (model_type %r): %s; blocks %s (%d x %s), %s linears per block: %s%s",
        type(model).__name__,
        getattr(getattr(model, "config", None), "model_type", None),
        layout.source,
        layout.blocks,
        len(blocks),
        type(blocks[0]).__name__,
        counts,
        ", ".join(shown),
        f"; kept in float: {', '.join(float_2d)}" if float_2d else "",
    )


def declare_layout(model: nn.Module, layout: LayerLayout) -> None:
    """Use ``layout`` for ``model`` from now on, and store it in the model's config.

    Raises:
        LayoutError: a path does not exist or does not name linears; the message lists
            what the model has.
    """
    layout = LayerLayout(layout.blocks, tuple(layout.linears), "declared")
    _check(model, layout)
    config = getattr(model, "config", None)
    if config is not None:
        setattr(config, CONFIG_KEY, {"blocks": layout.blocks, "linears": list(layout.linears)})
    object.__setattr__(model, _CACHE, layout)
    _log(model, layout)


def _resolve(model: nn.Module) -> LayerLayout:
    config = getattr(model, "config", None)
    declared = getattr(config, CONFIG_KEY, None)
    model_type = getattr(config, "model_type", None)
    if isinstance(declared, dict):
        layout = LayerLayout(str(declared["blocks"]), tuple(declared["linears"]), "declared")
        _check(model, layout, linears=False)
    elif model_type in LAYOUTS:
        table = LAYOUTS[model_type]
        layout = LayerLayout(table.blocks, table.linears, f"built-in {model_type!r}")
        _check(model, layout)
    else:
        layout = infer_layout(model)
        _check(model, layout)
    _log(model, layout)
    return layout


def get_layout(model: nn.Module) -> LayerLayout:
    """The layout of ``model``: declared, else built in, else inferred (cached on it).

    Raises:
        LayoutError: no layout can be found, or the one found does not fit the model.
    """
    cached = model.__dict__.get(_CACHE)
    if isinstance(cached, LayerLayout):
        return cached
    layout = _resolve(model)
    object.__setattr__(model, _CACHE, layout)
    return layout


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's decoder blocks, in order."""
    return _blocks_at(model, get_layout(model).blocks)


def final_norm(model: nn.Module) -> nn.Module | None:
    """The norm that the decoder applies after its last block (None: it applies none).

    It is the first child of the blocks' parent registered after the blocks whose class
    is a norm (``norm``, ``final_layernorm``, ``ln_f``, ...).
    """
    parent_path, _, name = get_layout(model).blocks.rpartition(".")
    parent = model.get_submodule(parent_path)
    after = False
    for child_name, child in parent.named_children():
        if after and "norm" in type(child).__name__.lower():
            return child
        after = after or child_name == name
    return None


def block_linears_of(block: nn.Module, layout: LayerLayout) -> dict[str, nn.Module]:
    """The linears of ``block`` that ``layout`` names, by their path inside the block."""
    return {
        name: m
        for name, m in _linears_in(block).items()
        if any(fnmatchcase(name, p) for p in layout.linears)
    }


def block_linears(model: nn.Module, index: int) -> dict[str, nn.Module]:
    """The quantizable linear modules of block ``index``, by their path inside the block."""
    layout = get_layout(model)
    return block_linears_of(decoder_blocks(model)[index], layout)


def block_param_counts(model: nn.Module) -> list[int]:
    """Quantizable parameters (linear weights) of each decoder block."""
    return [
        sum(m.get_parameter("weight").numel() for m in block_linears(model, i).values())
        for i in range(len(decoder_blocks(model)))
    ]
