"""A GPTQ database: every decoder block GPTQ-quantized once per precision of a ladder.

The model game swaps blocks between precisions by installing dequantized weights, which a
data-free backend computes from each weight alone. GPTQ needs the activations that reach a
block, and those depend on how the blocks before it are quantized. EvoPress (IST-DASLab,
``quant.py``) fixes them: block ``b`` is quantized, at every precision, on the hidden
states that enter it when every block before it is GPTQ-quantized at one *calibration bit
width*; the block at that width then feeds the next block. :func:`build_gptq_database`
does this with GPTQModel's own GPTQ (the settings :class:`~impq.backends.gptq.GptqBackend`
uses), so block ``b`` at precision ``p`` is what GPTQModel's sequential quantization of
the assignment "blocks ``0..b-1`` at the calibration bits, block ``b`` at ``p``" makes of
block ``b``.

Inside a block it follows GPTQModel, not EvoPress: the block's linears are taken in
groups that read the same input, in the order the block calls them (q/k/v, o, gate/up,
down on Llama), and each group is calibrated with the groups before it already quantized
at the precision being built. EvoPress calibrates every linear of a block on the float
block's activations. The first group's Hessian does not depend on the precision and is
computed once per block. Calibration sequences go through a block one at a time, as they
go through GPTQModel's with batch size 1, so that every Hessian is summed as GPTQModel
sums it.

The database holds each linear as the shipped model computes with it: GPTQModel's packed
``TorchLinear`` (16-bit scales) dequantized, bit for bit the weight of a checkpoint that
:meth:`~impq.backends.gptq.GptqBackend.quantize` writes for that assignment. The pass
itself runs, as GPTQModel's does, on GPTQ's own rounded weights (the same codes with
float32 scales). :meth:`GptqDatabase.quantizer` serves the database to
:class:`~impq.game.model.ModelGame` as its weight quantizer. Built once per (model,
calibration ids, ladder, group size, calibration bits), it is cached as safetensors.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from impq.artifacts import fingerprint, read_tensors, write_tensors
from impq.backends.base import UnsupportedError, assigned_linears
from impq.backends.gptq import (
    GptqBackend,
    StopForward,
    calibration_token_ids,
    gptq_task,
    hessian_hook,
    packed_linear,
    stop_forward,
)
from impq.models import block_linears, decoder_blocks

__all__ = ["GptqDatabase", "build_gptq_database", "database_path"]

log = logging.getLogger(__name__)

_SCHEMA = "impq-gptq-database/1"
_META_KEY = "gptq_database"


@dataclass(frozen=True)
class GptqDatabase:
    """Dequantized GPTQ weights of every block at every precision, and how they were made.

    Attributes:
        weights: ``(block, bits)`` -> {linear's path inside the block: dequantized weight}
            for every block and every precision in :attr:`bits`.
        ladder: the precisions asked for.
        calibration_bits: the precision of the blocks before a block while it was
            calibrated.
        group_size: GPTQ's group size.
        seconds: wall time spent building each block (as measured when it was built).
        model_key: hash of the float model the database was built from.
        key: hash of everything the weights depend on (the cache file is named by it).
    """

    weights: Mapping[tuple[int, int], Mapping[str, torch.Tensor]]
    ladder: tuple[int, ...]
    calibration_bits: int
    group_size: int
    seconds: tuple[float, ...]
    model_key: str
    key: str

    @property
    def n_blocks(self) -> int:
        """Decoder blocks of the model."""
        return len(self.seconds)

    @property
    def bits(self) -> tuple[int, ...]:
        """Precisions held: the ladder's, then the calibration bits if not on it."""
        extra = () if self.calibration_bits in self.ladder else (self.calibration_bits,)
        return (*self.ladder, *extra)

    def quantizer(self, model: nn.Module) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """A :data:`~impq.game.model.WeightQuantizer` that answers from the database.

        ``ModelGame(model, ids, database.quantizer(model), ...)`` plays the game on these
        GPTQ blocks: the game calls ``quantize(module.weight.data, bits)`` once per layout
        linear and precision, and gets the database's weight of that linear at ``bits``
        (in the weight's own dtype and device). A linear is recognized by its weight's
        storage (``data_ptr``), so ask with ``model``'s own weights, as they are now.

        Raises:
            ValueError: ``model`` is not the model the database was built from (its
                weights differ), or two layout linears share one weight.

        The returned function raises ``ValueError`` for a weight that is not one of
        ``model``'s layout linears, or for bits the database does not hold.
        """
        if _model_key(model) != self.model_key:
            raise ValueError(
                f"this GPTQ database was built from another model (or from other weights) "
                f"than the {type(model).__name__} given; build it from this model"
            )
        where: dict[int, tuple[int, str]] = {}
        for block in range(len(decoder_blocks(model))):
            for name, linear in block_linears(model, block).items():
                ptr = linear.get_parameter("weight").data_ptr()
                if ptr in where:
                    raise ValueError(
                        f"block {block} {name} shares its weight with block {where[ptr][0]} "
                        f"{where[ptr][1]}; the database cannot tell them apart"
                    )
                where[ptr] = (block, name)

        def quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
            found = where.get(weight.data_ptr())
            if found is None:
                raise ValueError(
                    f"a weight of shape {tuple(weight.shape)} is not one of the layout linears "
                    "of the model this quantizer was made for (it recognizes that model's own "
                    "weight tensors, before any are swapped)"
                )
            if bits not in self.bits:
                raise ValueError(
                    f"the GPTQ database holds {list(self.bits)} bits, not {bits}; build it "
                    "with that precision on its ladder"
                )
            stored = self.weights[found[0], bits][found[1]]
            if stored.shape != weight.shape:
                raise ValueError(
                    f"block {found[0]} {found[1]}: the database holds shape "
                    f"{tuple(stored.shape)}, the weight has {tuple(weight.shape)}"
                )
            return stored.to(device=weight.device, dtype=weight.dtype)

        return quantize

    def save(self, path: str | Path) -> Path:
        """Write the database as one safetensors file (atomically)."""
        tensors = {
            f"{block}/{bits}/{name}": weight
            for (block, bits), linears in self.weights.items()
            for name, weight in linears.items()
        }
        meta = {
            "schema": _SCHEMA,
            "ladder": list(self.ladder),
            "calibration_bits": self.calibration_bits,
            "group_size": self.group_size,
            "seconds": list(self.seconds),
            "model_key": self.model_key,
            "key": self.key,
        }
        return write_tensors(path, tensors, {_META_KEY: json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> GptqDatabase:
        """Read a database written by :meth:`save`.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the file is not a GPTQ database of this version.
        """
        tensors, metadata = read_tensors(path)
        meta = json.loads(metadata.get(_META_KEY, "{}"))
        if meta.get("schema") != _SCHEMA:
            raise ValueError(
                f"{path} is not a GPTQ database of schema {_SCHEMA!r} "
                f"(found {meta.get('schema')!r}); delete it and build the database again"
            )
        weights: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
        for name, weight in tensors.items():
            block, bits, rel = name.split("/", 2)
            weights.setdefault((int(block), int(bits)), {})[rel] = weight
        return cls(
            weights=weights,
            ladder=tuple(meta["ladder"]),
            calibration_bits=int(meta["calibration_bits"]),
            group_size=int(meta["group_size"]),
            seconds=tuple(float(s) for s in meta["seconds"]),
            model_key=str(meta["model_key"]),
            key=str(meta["key"]),
        )


def database_path(folder: str | Path, key: str) -> Path:
    """The cache file of the database with :attr:`GptqDatabase.key` ``key`` in ``folder``."""
    return Path(folder) / f"gptq-database-{key}.safetensors"


def build_gptq_database(
    model: nn.Module,
    calibration_ids: torch.Tensor,
    ladder: Sequence[int],
    group_size: int,
    calibration_bits: int = 3,
    *,
    cache_dir: str | Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
    progress: bool = True,
) -> GptqDatabase:
    """Every block of ``model`` GPTQ-quantized at each precision of ``ladder``, calibrated
    sequentially behind blocks at ``calibration_bits`` (see the module docstring).

    Args:
        model: the float model (left untouched).
        calibration_ids: (n, seqlen) token ids GPTQ calibrates on, one sequence per forward.
        ladder: the precisions to hold, distinct.
        group_size: GPTQ's group size.
        calibration_bits: the precision of the blocks in front of the block being built
            (EvoPress's calibration bit width); quantized as well when not on the ladder.
        cache_dir: a folder to keep the database in: a database built before for the same
            model, calibration ids, ladder, group size, calibration bits and dtype is read
            from it instead of being built again.
        dtype: compute dtype of GPTQ's pass (GPTQModel's: the quantized model runs in it).
        progress: show a progress bar over the blocks.

    Raises:
        UnsupportedError: GPTQModel missing; bits, group size or architecture unsupported;
            a block whose linears cannot be ordered (see :func:`_groups`).
        ValueError: an empty or repeated ladder, or calibration that is not token ids.
    """
    ladder = tuple(int(b) for b in ladder)
    if not ladder or len(set(ladder)) != len(ladder):
        raise ValueError(f"ladder must be distinct precisions, at least one; got {list(ladder)}")
    precisions = (*ladder, *(() if calibration_bits in ladder else (calibration_bits,)))
    n_blocks = len(decoder_blocks(model))
    for bits in precisions:
        assigned_linears(
            GptqBackend.name, model, dict.fromkeys(range(n_blocks), bits), group_size,
            GptqBackend.supported_bits,
        )  # fmt: skip
    ids = calibration_token_ids(calibration_ids)
    model_key = _model_key(model)
    key = fingerprint(
        _SCHEMA, model_key, ids, json.dumps([list(ladder), calibration_bits, group_size]),
        str(dtype), version("gptqmodel"),
    )  # fmt: skip
    path = None if cache_dir is None else database_path(cache_dir, key)
    if path is not None and path.is_file():
        log.info("gptq database: read %s", path)
        return GptqDatabase.load(path)

    weights, seconds = _build(model, ids, precisions, group_size, calibration_bits, dtype, progress)
    database = GptqDatabase(
        weights=weights,
        ladder=ladder,
        calibration_bits=calibration_bits,
        group_size=group_size,
        seconds=tuple(seconds),
        model_key=model_key,
        key=key,
    )
    log.info(
        "gptq database: %d blocks at %s bits (calibrated behind %d-bit blocks) in %.1f s",
        n_blocks, list(precisions), calibration_bits, sum(seconds),
    )  # fmt: skip
    if path is not None:
        database.save(path)
    return database


_SAVED_CONFIG_KEYS = frozenset({"architectures", "dtype", "torch_dtype", "transformers_version"})
"""Config entries that ``save_pretrained`` fills in (GPTQ quantization saves the model)."""


def _model_key(model: nn.Module) -> str:
    """Hash of the model's config (less :data:`_SAVED_CONFIG_KEYS`) and every tensor of its
    state."""
    config = getattr(model, "config", None)
    settings = {} if config is None else config.to_dict()
    kept = {k: v for k, v in settings.items() if k not in _SAVED_CONFIG_KEYS}
    parts: list[str | torch.Tensor] = [json.dumps(kept, sort_keys=True, default=str)]
    for name, tensor in sorted(model.state_dict().items()):
        parts += [name, tensor]
    return fingerprint(*parts)


@torch.no_grad()
def _build(
    model: nn.Module,
    ids: torch.Tensor,
    precisions: tuple[int, ...],
    group_size: int,
    calibration_bits: int,
    dtype: torch.dtype,
    progress: bool,
) -> tuple[dict[tuple[int, int], dict[str, torch.Tensor]], list[float]]:
    """The weights of every block at every precision and the seconds each block took."""
    device = next(model.parameters()).device
    work: nn.Module = copy.deepcopy(model).eval()
    for p in work.parameters():  # buffers (rotary frequencies) stay as GPTQModel loads them
        p.data = p.data.to(dtype)
    blocks = decoder_blocks(work)
    rows = [row[None].to(device) for row in ids]
    hidden, kwargs = _capture(work, rows)
    weights: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    seconds: list[float] = []
    for b in tqdm(range(len(blocks)), desc="gptq database", disable=not progress):
        t0 = time.perf_counter()
        block, linears = blocks[b], block_linears(work, b)
        groups = _groups(b, block, linears, hidden[0], kwargs[b][0])
        float_weights = {name: m.get_parameter("weight").data for name, m in linears.items()}
        first = _hessian(block, linears, groups[0], hidden, kwargs[b], group_size)
        calibrated: dict[str, torch.Tensor] = {}
        for bits in precisions:
            shipped = weights[b, bits] = {}
            for g, group in enumerate(groups):
                leader = first if g == 0 else _hessian(
                    block, linears, group, hidden, kwargs[b], group_size
                )  # fmt: skip
                for name in group:
                    linear = cast(nn.Linear, linears[name])
                    task = gptq_task(linear, bits, group_size)
                    task.adopt_hessian_from(leader)
                    q_weight, scale, zero, g_idx, *_ = task.quantize()
                    packed: Any = packed_linear(
                        linear, q_weight, scale, zero, g_idx, bits, group_size, task.qcfg.sym, dtype
                    )  # fmt: skip
                    shipped[name] = packed.dequantize_weight().T.contiguous().cpu()
                    linear.get_parameter("weight").data = q_weight
                    if bits == calibration_bits:
                        calibrated[name] = q_weight
            _install(linears, float_weights)
        _install(linears, calibrated)
        hidden = [_output(block(h, **kw)) for h, kw in zip(hidden, kwargs[b], strict=True)]
        seconds.append(time.perf_counter() - t0)
    return weights, seconds


def _capture(
    model: nn.Module, rows: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[list[dict[str, Any]]]]:
    """Per calibration row: the hidden state entering block 0, and each block's kwargs."""
    blocks = decoder_blocks(model)
    hidden: list[torch.Tensor] = []
    kwargs: list[list[dict[str, Any]]] = [[] for _ in blocks]

    def record(index: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
            if len(args) > 1:
                raise UnsupportedError(
                    f"decoder block {index} is called with {len(args)} positional arguments; "
                    "the GPTQ database supports block(hidden, **kwargs) only"
                )
            kwargs[index].append({k: v for k, v in kw.items() if k != "hidden_states"})
            if index == 0:
                hidden.append(args[0] if args else kw["hidden_states"])

        return hook

    handles = [
        block.register_forward_pre_hook(record(i), with_kwargs=True)
        for i, block in enumerate(blocks)
    ]
    handles.append(blocks[-1].register_forward_hook(stop_forward))
    try:
        for row in rows:
            with suppress(StopForward):
                model(input_ids=row, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return hidden, kwargs


def _output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _groups(
    index: int,
    block: nn.Module,
    linears: Mapping[str, nn.Module],
    hidden: torch.Tensor,
    kwargs: dict[str, Any],
) -> list[list[str]]:
    """The block's linears in the order it calls them, grouped by the input they share.

    Raises:
        UnsupportedError: a linear the block does not call on the first calibration row
            (an expert no token of it reaches), or one it calls twice.
    """
    calls: list[tuple[str, torch.Tensor]] = []  # holding each input keeps it distinct

    def seen(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            calls.append((name, args[0]))

        return hook

    handles = [m.register_forward_pre_hook(seen(n)) for n, m in linears.items()]
    try:
        block(hidden, **kwargs)
    finally:
        for h in handles:
            h.remove()
    names = [n for n, _ in calls]
    if sorted(names) != sorted(linears):
        missed = sorted(set(linears) - set(names))
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UnsupportedError(
            f"block {index}: the GPTQ database needs each layout linear called once per "
            f"forward; not called on the first calibration row: {missed or 'none'}, called "
            f"more than once: {twice or 'none'}"
        )
    groups: list[list[str]] = []
    last = None
    for name, source in calls:
        if source is not last:
            groups.append([])
        groups[-1].append(name)
        last = source
    return groups


def _hessian(
    block: nn.Module,
    linears: Mapping[str, nn.Module],
    group: list[str],
    hidden: Iterable[torch.Tensor],
    kwargs: Iterable[dict[str, Any]],
    group_size: int,
) -> Any:
    """A GPTQ task holding the Hessian of ``group``'s shared input over the calibration
    rows, with the block's weights as installed (the forward stops after the group)."""
    leader = gptq_task(linears[group[0]], 4, group_size)  # collects only: bits unused
    handles = [
        linears[group[0]].register_forward_hook(hessian_hook(leader)),
        linears[group[-1]].register_forward_hook(stop_forward),
    ]
    try:
        for h, kw in zip(hidden, kwargs, strict=True):
            with suppress(StopForward):
                block(h, **kw)
    finally:
        for handle in handles:
            handle.remove()
    return leader


def _install(linears: Mapping[str, nn.Module], weights: Mapping[str, torch.Tensor]) -> None:
    for name, linear in linears.items():
        linear.get_parameter("weight").data = weights[name]
