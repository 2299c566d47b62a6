"""GPTQ backend through GPTQModel: per-block bits with its ``dynamic`` module overrides.

AutoGPTQ is unmaintained and does not import beside transformers 5, so GPTQ goes through
GPTQModel (``pip install -c constraints.txt --no-build-isolation 'impq[gptq]'``).
GPTQModel quantizes from a checkpoint folder, so :meth:`GptqBackend.quantize` writes the
float model to a temporary folder, quantizes it there with the calibration set at 2, 3,
4 or 8 bits (the base bits are the assignment's most common ones; ``dynamic`` regexes
override the bits of other blocks and skip unassigned ones), saves GPTQModel's
mixed-precision checkpoint and loads it back. The model it returns is
therefore exactly what :meth:`GptqBackend.load` gives for the saved checkpoint.

GPTQModel's ``TorchLinear`` kernel (the one that runs on CPU and CUDA alike) computes in
float16 or bfloat16 only, so a quantized model runs in bfloat16 (``dtype``). Its stored
tensors per linear are ``qweight`` (codes packed in int32 words down each output column:
``ceil(in * bits / 32)`` words; at 3 bits 32 codes fill 3 words), ``qzeros`` (packed the
same way along each group's row of outputs), ``scales`` (16-bit) and ``g_idx`` (one int32
per input column): :class:`GptqFootprint`.

The checkpoint is GPTQModel's own Hugging Face folder (``GPTQModel.load`` reads it without
impq), plus ``impq_quantization.json`` (the assignment, for :meth:`GptqBackend.load`).
GPTQModel insists on a tokenizer, so the folder holds a stand-in one (token ids only);
the export stage replaces it by the source model's.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from impq.artifacts import read_json, write_json
from impq.backends.base import (
    UnsupportedError,
    assigned_linears,
    check_bits,
    check_group_size,
    stored_tensor_bytes,
)
from impq.footprint import Footprint
from impq.models import block_linears, decoder_blocks, get_layout

if TYPE_CHECKING:
    from impq.backends.gptq_database import GptqDatabase

__all__ = [
    "GPTQ_INSTALL",
    "GptqBackend",
    "GptqFootprint",
    "StopForward",
    "calibration_token_ids",
    "gptq_task",
    "hessian_hook",
    "packed_linear",
    "stop_forward",
]

log = logging.getLogger(__name__)

GPTQ_INSTALL = "pip install -c constraints.txt --no-build-isolation 'gptqmodel==7.6.0'"
"""How to install GPTQModel without pip fetching a CUDA build of torch."""

_STORED = ("qweight", "qzeros", "scales", "g_idx")
_MIN_CPU_WORKERS = 2
"""GPTQModel 7.6 builds a 2-worker ``model_loader:cpu`` pool inside its CPU pool, so it
refuses ``GPTQMODEL_CPU_WORKERS`` below 2 ("requests 2 workers but parent 'cpu' only has 1")."""
_HESSIAN_BYTES = 2 << 30
"""Hessians held at once by :meth:`GptqBackend.quantize_blocks` (float32): the blocks are
taken in groups that fit, one calibration pass per group."""
_WORD_BITS = 32
"""GPTQModel packs codes and zeros in int32 words."""
_CHECKPOINT_ATTR = "_impq_gptq_checkpoint"
_IMPQ_FILE = "impq_quantization.json"


@dataclass(frozen=True)
class GptqFootprint(Footprint):
    """GPTQModel's layout: int32-packed codes, a 16-bit scale and an int32-packed zero per
    group, and one int32 ``g_idx`` entry per input column."""

    scale_bytes: int = 2
    zero_bytes: int = 0
    column_bytes: int = 4

    def codes(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """``qweight``: each output column's codes in ``ceil(in * bits / 32)`` int32 words."""
        return 4 * out_features * -(-in_features * bits // _WORD_BITS)

    def zeros(self, out_features: int, in_features: int, bits: int, group_size: int) -> int:
        """``qzeros``: each group's row of zeros in ``ceil(out * bits / 32)`` int32 words."""
        return 4 * (in_features // group_size) * -(-out_features * bits // _WORD_BITS)


def _gptqmodel() -> Any:
    try:
        import gptqmodel
    except ImportError as err:
        raise UnsupportedError(
            f"backend 'gptq' needs GPTQModel, which is not installed ({err}); install it "
            f"with: {GPTQ_INSTALL}  (AutoGPTQ is unmaintained and does not work with "
            "transformers 5)"
        ) from None
    return gptqmodel


_CONVERSION_MAPPING = (
    "transformers.conversion_mapping.get_checkpoint_conversion_mapping",
    "transformers.modeling_utils.get_checkpoint_conversion_mapping",
)


@contextmanager
def _transformers_as_found(model_type: str) -> Iterator[None]:
    """Put back, on exit, what GPTQModel's loader swaps inside transformers.

    ``GPTQModel.load`` calls ``defuser.replace_fused_blocks(model_type)``, which replaces
    transformers' mixture-of-experts block classes (Qwen2-MoE, Qwen3-MoE, ...) by unfused
    ones for every model built later in the process, and transformers' checkpoint
    conversion mapping with them. impq splits experts itself (:mod:`impq.models.experts`);
    models built after a GPTQ run in the same process must be the ones transformers builds.
    """
    try:
        from defuser.model_registry import MODEL_CONFIG, PATCH
    except ImportError:  # an older GPTQModel without defuser patches nothing
        yield
        return
    swapped = [orig for orig, _ in MODEL_CONFIG.get(model_type, {}).get(PATCH.REPLACE_MODULE, [])]
    saved = []
    for path in (*swapped, *_CONVERSION_MAPPING):
        module_path, name = path.rsplit(".", 1)
        module = import_module(module_path)
        if hasattr(module, name):
            saved.append((module, name, getattr(module, name)))
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _drain_workers() -> None:
    """Wait until GPTQModel's background threads have finished their tasks.

    After a failed quantization its finalizer threads may still be writing the blocks they
    were given into the offload folder. Removing that folder under them makes the thread
    fail, and a failed task makes GPTQModel end the whole process (``os._exit(1)``) before
    the caller's error is printed.
    """
    from gptqmodel import DEVICE_THREAD_POOL
    from gptqmodel.utils.stream import STREAM_DEVICE_POOL

    DEVICE_THREAD_POOL.wait()
    STREAM_DEVICE_POOL.wait()


def _dynamic(model: nn.Module, assignment: dict[int, int], default_bits: int) -> dict[str, Any]:
    """GPTQModel ``dynamic`` overrides: linears outside the layout and unassigned blocks
    skipped, other bits per block (GPTQModel applies the first pattern that matches)."""
    prefix = re.escape(get_layout(model).blocks)
    out: dict[str, Any] = {}
    for i in sorted(assignment):
        kept = block_linears(model, i)
        for rel, m in decoder_blocks(model)[i].named_modules():
            if isinstance(m, nn.Linear) and rel not in kept:
                out[rf"-:^{prefix}\.{i}\.{re.escape(rel)}$"] = {}
    for bits in sorted(set(assignment.values()) - {default_bits}):
        blocks = "|".join(str(i) for i, b in sorted(assignment.items()) if b == bits)
        out[rf"+:^{prefix}\.({blocks})\."] = {"bits": bits}
    skipped = [str(i) for i in range(len(decoder_blocks(model))) if i not in assignment]
    if skipped:
        out[rf"-:^{prefix}\.({'|'.join(skipped)})\."] = {}
    return out


def _cpu_workers() -> None:
    """Set ``GPTQMODEL_CPU_WORKERS`` to 2 unless a larger value is set (see
    :data:`_MIN_CPU_WORKERS`)."""
    value = os.environ.get("GPTQMODEL_CPU_WORKERS", "")
    if value.isdigit() and int(value) >= _MIN_CPU_WORKERS:
        return
    if value:
        log.warning(
            "GPTQMODEL_CPU_WORKERS=%s: GPTQModel needs at least %d; using %d",
            value, _MIN_CPU_WORKERS, _MIN_CPU_WORKERS,
        )  # fmt: skip
    os.environ["GPTQMODEL_CPU_WORKERS"] = str(_MIN_CPU_WORKERS)


def _send_logs_to(folder: Path) -> None:
    """Keep GPTQModel's per-module log files out of the working directory.

    GPTQModel writes them to a ``logs/`` folder relative to the current directory (a
    module constant of its looper); they go to the temporary work folder instead.
    """
    from gptqmodel.looper import loop_processor

    loop_processor._PROJECT_LOG_DIR = folder


def calibration_token_ids(calibration: torch.Tensor) -> torch.Tensor:
    """``calibration`` as GPTQ takes it: (n, seqlen) int64 token ids on the CPU.

    Raises:
        ValueError: ``calibration`` is not 2-D, or its sequences are shorter than 2 tokens.
    """
    ids = calibration.detach().cpu().long()
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ValueError(f"calibration must be (n, seqlen) token ids, got {tuple(ids.shape)}")
    return ids


def _calibration_rows(calibration: torch.Tensor) -> list[dict[str, list[int]]]:
    ids = calibration_token_ids(calibration)
    return [{"input_ids": row.tolist(), "attention_mask": [1] * len(row)} for row in ids]


def _write_stand_in_tokenizer(folder: Path, vocab_size: int) -> None:
    """GPTQModel insists on loading a tokenizer; calibration is already token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"<t{i}>": i for i in range(vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<t0>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<t0>", pad_token="<t0>"
    ).save_pretrained(str(folder))


def _eager(model: nn.Module) -> nn.Module:
    """Undo GPTQModel's lazy ``torch.compile`` of dequantization (minutes on CPU), and on
    a CPU without native 16-bit matrix multiply compute its linears in float32
    (:func:`_float32_matmul`)."""
    slow_16_bit = not _native_16_bit_matmul()
    for m in model.modules():
        if "dequantize_weight" in vars(m):
            del m.dequantize_weight
        if slow_16_bit and hasattr(m, "qweight") and not hasattr(m, _FLOAT32_ATTR):
            _float32_matmul(m)
    return model


_FLOAT32_ATTR = "_impq_float32_matmul"


def _native_16_bit_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX-512 BF16, AMX)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _float32_matmul(linear: nn.Module) -> None:
    """Make a ``TorchLinear`` multiply in float32 on CPU, its output in its compute dtype.

    Without AVX-512 BF16 or AMX, torch's CPU matmul of bfloat16 operands in the layout
    ``TorchLinear`` uses (input @ weight, the weight in-by-out) falls back to a kernel
    about 50x slower than float32's (3.3 s against 67 ms for 2048 x 576 @ 576 x 1536 on
    one AVX2 core): GPTQ's evaluation of SmolLM2 took minutes where it took seconds on a
    CPU with AMX. Both operands widen exactly, the products are accumulated in float32 as
    a bfloat16 kernel accumulates them, and the output is rounded back to the compute
    dtype: the same numbers up to the order of summation.
    """

    def widen(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        x = args[0]
        if x.device.type != "cpu" or x.dtype == torch.float32:
            return None
        return (x.float(), *args[1:])

    def narrow(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        dtype = module.get_buffer("scales").dtype
        return out if out.device.type != "cpu" else out.to(dtype)

    linear.register_forward_pre_hook(widen)
    linear.register_forward_hook(narrow)
    setattr(linear, _FLOAT32_ATTR, True)


def _check_coverage(model: nn.Module, quantized: nn.Module, assignment: dict[int, int]) -> None:
    """Raise unless GPTQModel quantized exactly the layout's weights of each block.

    GPTQModel has its own definition of each architecture (or guesses one for an unknown
    type) and may split fused projections (Phi-3's ``gate_up_proj``), so blocks are
    compared by their number of quantized weights, not by module names.
    """
    prefix = get_layout(model).blocks
    done = _quant_modules(quantized)
    for i in range(len(decoder_blocks(model))):
        linears = block_linears(model, i) if i in assignment else {}
        want = sum(m.get_parameter("weight").numel() for m in linears.values())
        ours = {n: m for n, m in done.items() if n.startswith(f"{prefix}.{i}.")}
        got = sum(int(m.in_features) * int(m.out_features) for m in ours.values())
        if got != want:
            missing = [f"{prefix}.{i}.{r}" for r in linears if f"{prefix}.{i}.{r}" not in ours]
            extra = sorted(set(ours) - {f"{prefix}.{i}.{r}" for r in linears})
            raise UnsupportedError(
                f"backend 'gptq': GPTQModel quantized {got} weights of block {i} where the "
                f"layout names {want} ({type(model).__name__}); not quantized: "
                f"{missing[:5] or 'none'}, quantized beyond the layout: {extra[:5] or 'none'}"
            )


class StopForward(Exception):
    """Ends a calibration forward early: raised by :func:`stop_forward` after the last
    module whose inputs the pass needs (catch it around the forward)."""


def _hessian_groups(model: nn.Module, blocks: list[int]) -> Iterator[list[int]]:
    """``blocks`` in order, in groups whose Hessians (one per linear, in_features squared,
    float32) fit in :data:`_HESSIAN_BYTES`; at least one block per group."""
    group: list[int] = []
    held = 0
    for i in blocks:
        need = sum(
            4 * m.get_parameter("weight").shape[1] ** 2 for m in block_linears(model, i).values()
        )
        if group and held + need > _HESSIAN_BYTES:
            yield group
            group, held = [], 0
        group.append(i)
        held += need
    if group:
        yield group


def packed_linear(linear: nn.Linear, q_weight: torch.Tensor, scale: torch.Tensor,
                  zero: torch.Tensor, g_idx: torch.Tensor, bits: int, group_size: int,
                  sym: bool, dtype: torch.dtype) -> nn.Module:  # fmt: skip
    """GPTQModel's ``TorchLinear`` holding ``q_weight`` packed (what its checkpoints load).

    Args:
        linear: the float linear that was quantized (its shape, bias and device).
        q_weight, scale, zero, g_idx: what :func:`gptq_task`'s ``quantize()`` returned.
        bits, group_size, sym: the task's settings.
        dtype: compute dtype of the packed module (16-bit scales).
    """
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    rounded = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    rounded.weight.data = q_weight.to(torch.float32).cpu()
    if linear.bias is not None:
        rounded.bias.data = linear.bias.detach().to(torch.float32).cpu()
    out = TorchLinear(
        bits=bits, group_size=group_size, sym=sym, desc_act=False,
        in_features=linear.in_features, out_features=linear.out_features,
        bias=linear.bias is not None,
    )  # fmt: skip
    out.pack(rounded, scale.cpu(), zero.cpu(), g_idx.cpu())
    out.post_init()
    return _eager(out).to(dtype=dtype, device=linear.weight.device)


def _quant_modules(model: nn.Module) -> dict[str, Any]:
    prefix = get_layout(model).blocks + "."
    return {
        n: m
        for n, m in model.named_modules()
        if n.startswith(prefix) and all(hasattr(m, k) for k in ("qweight", "qzeros", "scales"))
    }


def hessian_hook(task: Any) -> Callable[..., None]:
    """A forward hook that adds a module's input batch to ``task``'s Hessian (its
    ``add_batch``); register it on the linear the task quantizes, or on any linear that
    reads the same input."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        task.add_batch(inputs[0].detach(), output.detach())

    return hook


def stop_forward(module: nn.Module, inputs: Any, output: Any) -> None:
    """A forward hook that ends the forward after its module (raises :class:`StopForward`)."""
    raise StopForward


def gptq_task(linear: nn.Module, bits: int, group_size: int) -> Any:
    """GPTQModel's GPTQ for ``linear`` at ``bits`` with the settings :meth:`GptqBackend.quantize`
    gives GPTQModel (per-channel, no activation order); it quantizes a copy of the weight
    from the inputs given to its ``add_batch`` (:func:`hessian_hook`).

    Raises:
        UnsupportedError: GPTQModel is not installed.
    """
    gm = _gptqmodel()
    from gptqmodel.quantization.gptq import GPTQ

    task = GPTQ(linear, gm.QuantizeConfig(bits=bits, group_size=group_size, desc_act=False))
    task.quantizer.configure(perchannel=True)
    return task


class GptqBackend:
    """GPTQ with per-block bits via GPTQModel's ``dynamic`` overrides (needs calibration).

    Attributes:
        dtype: compute dtype of the quantized model (GPTQModel's torch kernel needs a
            16-bit float).
    """

    name = "gptq"
    supported_bits = frozenset({2, 3, 4, 8})
    data_free = False

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype

    @torch.no_grad()
    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """Not offered: GPTQ's result depends on calibration activations, not the weight alone.

        Raises:
            UnsupportedError: always; the model game plays GPTQ on its per-block database
                (:meth:`weight_database`).
        """
        check_bits(self.name, bits, self.supported_bits)
        check_group_size(self.name, weight, group_size)
        raise UnsupportedError(
            "backend 'gptq' cannot dequantize a weight on its own (GPTQ needs calibration "
            "activations); quantize every block from calibration data with "
            "GptqBackend.weight_database and use its quantizer"
        )

    def weight_database(
        self,
        model: nn.Module,
        calibration: torch.Tensor,
        ladder: Sequence[int],
        group_size: int,
        calibration_bits: int,
        *,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> GptqDatabase:
        """:func:`~impq.backends.gptq_database.build_gptq_database` in this backend's
        compute dtype: every block GPTQ-quantized at each precision of ``ladder``, behind
        blocks at ``calibration_bits`` (read from ``cache_dir`` when built there before).

        Raises:
            UnsupportedError: GPTQModel missing; bits, group size or architecture
                unsupported.
            ValueError: an empty or repeated ladder, or calibration that is not token ids.
        """
        from impq.backends.gptq_database import build_gptq_database

        return build_gptq_database(
            model, calibration, ladder, group_size, calibration_bits,
            cache_dir=cache_dir, dtype=self.dtype, progress=progress,
        )  # fmt: skip

    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """A new GPTQ-quantized model of ``model`` under ``assignment`` (``model`` untouched).

        Raises:
            UnsupportedError: GPTQModel missing, or bits/group size/architecture unsupported.
            ValueError: no calibration data.
        """
        gm = _gptqmodel()
        assigned_linears(self.name, model, assignment, group_size, self.supported_bits)
        if not assignment:
            raise ValueError("gptq needs at least one assigned block")
        if calibration is None:
            raise ValueError("gptq needs calibration token ids (n, seqlen); got None")
        _cpu_workers()
        default = max(set(assignment.values()), key=list(assignment.values()).count)
        device = next(model.parameters()).device
        out = Path(tempfile.mkdtemp(prefix="impq-gptq-"))
        with tempfile.TemporaryDirectory(
            prefix="impq-gptq-float-", ignore_cleanup_errors=True
        ) as tmp:
            float_dir = Path(tmp)
            qconfig = gm.QuantizeConfig(
                bits=default,
                group_size=group_size,
                desc_act=False,
                dynamic=_dynamic(model, assignment, default) or None,
                # its own default, a temporary folder removed at interpreter exit, races
                # with its writer threads there when a quantization failed
                offload_to_disk_path=str(float_dir / "offload"),
            )
            hf: Any = model
            hf.save_pretrained(str(float_dir))
            _write_stand_in_tokenizer(float_dir, int(hf.config.vocab_size))
            _send_logs_to(float_dir / "logs")
            rows = _calibration_rows(calibration)
            with _transformers_as_found(hf.config.model_type):
                try:
                    g = gm.GPTQModel.load(
                        str(float_dir), qconfig, device=str(device), dtype=self.dtype
                    )
                    g.quantize(rows, batch_size=1)
                except ValueError as err:  # its architecture definition does not fit
                    raise UnsupportedError(
                        f"backend 'gptq': GPTQModel cannot quantize {type(model).__name__} "
                        f"(model_type {hf.config.model_type!r}): {err}"
                    ) from err
                finally:
                    _drain_workers()  # before the offload folder goes
                g.save(str(out))
                del g
        write_json(
            out / _IMPQ_FILE,
            {"backend": self.name, "group_size": group_size, "bits": _str_keys(assignment)},
        )
        quantized = self.load(out, device)
        setattr(quantized, _CHECKPOINT_ATTR, str(out))
        weakref.finalize(quantized, shutil.rmtree, str(out), ignore_errors=True)
        _check_coverage(model, quantized, assignment)
        log.info("gptq: quantized %d blocks (default %d bits)", len(assignment), default)
        return quantized

    @torch.no_grad()
    def quantize_blocks(
        self,
        model: nn.Module,
        blocks: Iterable[int],
        bits: int,
        group_size: int,
        calibration: torch.Tensor,
    ) -> dict[int, dict[str, nn.Module]]:
        """Each block's layout linears GPTQ-quantized at ``bits`` on the float model's own
        activations, as EvoPress builds its layer database (``model`` untouched).

        GPTQModel's own GPTQ (its Hessians, damping and quantizer, the settings
        :meth:`quantize` uses) quantizes every linear from the inputs the float model
        gives it on ``calibration``; the results are packed into GPTQModel's
        ``TorchLinear``, the module its checkpoints load as. Unlike :meth:`quantize`, no
        block sees the outputs of quantized blocks before it (nor, inside a block, of
        quantized linears before it). One calibration pass per group of blocks whose
        Hessians fit in :data:`_HESSIAN_BYTES`.

        Raises:
            UnsupportedError: GPTQModel missing, or bits/group size/architecture unsupported.
            ValueError: calibration is not (n, seqlen) token ids.
        """
        blocks = sorted(set(blocks))
        assigned_linears(
            self.name, model, dict.fromkeys(blocks, bits), group_size, self.supported_bits
        )
        rows = calibration_token_ids(calibration)
        device = next(model.parameters()).device
        # weights and activations in the compute dtype, as GPTQModel loads the float model
        model = copy.deepcopy(model).to(self.dtype)
        out: dict[int, dict[str, nn.Module]] = {}
        for group in _hessian_groups(model, blocks):
            tasks: dict[tuple[int, str], tuple[Any, Any]] = {}
            hooks = []
            for i in group:
                for rel, linear in block_linears(model, i).items():
                    task = gptq_task(linear, bits, group_size)
                    tasks[i, rel] = (linear, task)
                    hooks.append(linear.register_forward_hook(hessian_hook(task)))
            hooks.append(decoder_blocks(model)[group[-1]].register_forward_hook(stop_forward))
            try:
                for row in rows:
                    with suppress(StopForward):
                        model(input_ids=row[None].to(device))
            finally:
                for h in hooks:
                    h.remove()
            for (i, rel), (linear, task) in tasks.items():
                q_weight, scale, zero, g_idx, *_ = task.quantize()
                out.setdefault(i, {})[rel] = packed_linear(
                    linear, q_weight, scale, zero, g_idx, bits, group_size, task.qcfg.sym,
                    self.dtype,
                )  # fmt: skip
            del tasks
        log.info("gptq: quantized %d blocks at %d bits on float inputs", len(blocks), bits)
        return out

    def assembled(self, model: nn.Module) -> nn.Module:
        """``model`` in the compute dtype of GPTQModel's torch kernel (:attr:`dtype`), as
        :meth:`load` gives it."""
        return model.to(self.dtype).eval()

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes of qweight, qzeros, scales and g_idx of every GPTQ linear in the blocks."""
        return stored_tensor_bytes(_quant_modules(model).values(), _STORED.__contains__)

    def footprint(self, model: nn.Module) -> Footprint:
        """:class:`GptqFootprint` (the same for every model dtype: 16-bit scales)."""
        return GptqFootprint()

    def save(self, model: nn.Module, path: Path) -> None:
        """Copy the GPTQModel checkpoint the model was loaded from to ``path``."""
        source = getattr(model, _CHECKPOINT_ATTR, None)
        if source is None or not Path(source).is_dir():
            raise ValueError("this model was not produced by GptqBackend.quantize/load")
        if Path(source).resolve() != Path(path).resolve():
            shutil.copytree(source, path, dirs_exist_ok=True)

    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Load a GPTQModel mixed-precision checkpoint as a transformers model."""
        gm = _gptqmodel()
        path = Path(path)
        read_json(path / _IMPQ_FILE)
        device = torch.device(device)
        if device.type not in ("cpu", "cuda"):
            raise UnsupportedError(f"backend 'gptq' runs on ['cpu', 'cuda'], not {device.type!r}")
        model_type = read_json(path / "config.json")["model_type"]
        with _transformers_as_found(model_type):
            g = gm.GPTQModel.load(
                str(path), device=str(device), backend=gm.BACKEND.TORCH, dtype=self.dtype
            )
        model: nn.Module = _eager(g.model).eval()
        setattr(model, _CHECKPOINT_ATTR, str(path))
        return model


def _str_keys(assignment: dict[int, int]) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(assignment.items())}
