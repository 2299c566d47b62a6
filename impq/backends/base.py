"""The backend protocol, its registry and what every backend shares.

A backend turns a float model into a mixed-precision one under a per-block assignment
``{block index: bits}``. Heavy libraries are imported lazily inside each backend module,
so listing or choosing a backend costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

from impq.footprint import SOLVER, Footprint, budget_bytes
from impq.models import block_linears, decoder_blocks, get_layout
from impq.registry import Registry

if TYPE_CHECKING:
    from impq.config import EvalConfig, ModelConfig
    from impq.eval import PerplexityResult

__all__ = [
    "BACKENDS",
    "Backend",
    "BlockwiseBackend",
    "DatabaseBackend",
    "OverBudgetError",
    "ScoredBackend",
    "Scorer",
    "UnsupportedError",
    "WeightDatabase",
    "assigned_linears",
    "backends_storing",
    "budget_bytes_for",
    "check_bits",
    "check_group_size",
    "check_within_budget",
    "database_backends",
    "expected_bytes",
    "get_backend",
    "linear_shapes",
    "set_submodule",
    "stored_tensor_bytes",
]


class UnsupportedError(ValueError):
    """A backend was asked for a bit width, architecture or device it cannot handle."""


class OverBudgetError(ValueError):
    """A quantized model stores more bytes than its budget allows."""


@runtime_checkable
class Backend(Protocol):
    """What every quantization backend offers.

    Lifecycle: :meth:`quantize` a float model (in place) → :meth:`stored_bytes` →
    :meth:`save` → :meth:`load` in another process. Blocks missing from an assignment
    stay in float and are not counted by :meth:`stored_bytes`.
    """

    name: str
    supported_bits: frozenset[int]
    data_free: bool
    """True when each linear is quantized from its own weight alone (no calibration), so
    quantizing blocks one at a time gives the same model as quantizing them together."""

    def dequantize_weight(self, weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
        """``weight`` quantized at ``bits`` and dequantized back (same shape and dtype).

        This is how SPQE sees a block at a given precision without re-quantizing it
        for every coalition.
        """
        ...

    def quantize(
        self,
        model: nn.Module,
        assignment: dict[int, int],
        group_size: int,
        calibration: torch.Tensor | None = None,
    ) -> nn.Module:
        """Quantize ``model``'s decoder blocks under ``assignment``; return the model.

        Quanto and HQQ change ``model`` in place and return it; a backend that has to
        rebuild the model (GPTQ) returns the new one, so always use the return value.
        """
        ...

    def stored_bytes(self, model: nn.Module) -> int:
        """Bytes that the quantized linear layers of the blocks store (what :meth:`save`
        writes for them: codes, scales, zeros and every other tensor of those modules)."""
        ...

    def footprint(self, model: nn.Module) -> Footprint:
        """How this backend stores one quantized linear of ``model`` (its dtype decides
        the width of float metadata for some backends); :meth:`stored_bytes` equals
        :func:`expected_bytes` with it."""
        ...

    def save(self, model: nn.Module, path: Path) -> None:
        """Write a quantized model so that :meth:`load` restores it."""
        ...

    def load(self, path: Path, device: torch.device | str = "cpu") -> nn.Module:
        """Read back a model written by :meth:`save`."""
        ...


@runtime_checkable
class BlockwiseBackend(Protocol):
    """A calibrated backend that can quantize blocks one precision at a time on the float
    model's own activations (EvoPress's layer database), so that the models of a sweep are
    assembled from blocks quantized once instead of quantizing every assignment anew.

    Sequential quantization of a whole assignment (what :meth:`Backend.quantize` does)
    feeds each block the outputs of the quantized blocks before it; a model assembled from
    these blocks differs from it, and the sweep says which of the two it measured
    (``backends.calibrated_cells``).
    """

    def quantize_blocks(
        self,
        model: nn.Module,
        blocks: Iterable[int],
        bits: int,
        group_size: int,
        calibration: torch.Tensor,
    ) -> dict[int, dict[str, nn.Module]]:
        """Block -> {name in the block: quantized module} for the layout's linears of each
        of ``blocks`` at ``bits``, calibrated on ``model``'s float activations on
        ``calibration`` (``model`` untouched)."""
        ...

    def assembled(self, model: nn.Module) -> nn.Module:
        """``model`` (a float copy holding modules from :meth:`quantize_blocks`) made ready
        to run as this backend's models run (its compute dtype)."""
        ...


@runtime_checkable
class WeightDatabase(Protocol):
    """Every decoder block of one model quantized once at each precision of a ladder.

    Attributes:
        key: hash of everything its weights depend on (model, calibration, settings).
    """

    key: str

    def quantizer(self, model: nn.Module) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``(weight, bits) -> dequantized weight`` answered from the database, for the
        weights of ``model``'s layout linears (the model it was built from)."""
        ...


@runtime_checkable
class DatabaseBackend(Protocol):
    """A calibrated backend that builds a per-block database: every block quantized once
    at every precision of a ladder, calibrated behind blocks at one precision (EvoPress's
    database). The model game plays on it where a data-free backend quantizes each weight
    on its own (:meth:`Backend.dequantize_weight`)."""

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
    ) -> WeightDatabase:
        """The database of ``model`` (left untouched) calibrated on ``calibration`` token
        ids, the blocks before each block at ``calibration_bits``; read from
        ``cache_dir`` when built there before with the same inputs, else built (and
        written there)."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """Measures assignments of one model in a runtime outside this process (llama.cpp).

    Attributes:
        fingerprint_parts: what its results depend on beyond the sweep's own inputs
            (tool versions, format settings); they enter each sweep cell's cache key.
    """

    fingerprint_parts: tuple[str, ...]

    @property
    def model(self) -> nn.Module:
        """The float model (its linear shapes price the budget)."""
        ...

    def measure(
        self, bits: dict[int, int], ids: torch.Tensor
    ) -> tuple[dict[str, Any], PerplexityResult]:
        """Store ``bits`` in the runtime's format and score it on the evaluation ids.

        Returns:
            The sweep's facts (``stored_bytes``, ``expected_bytes``, ``bits_per_weight``,
            ``quantize_seconds``, ``blocks_quantized``, ``eval_seconds``, and what else
            the runtime reports) and the perplexity with its per-window NLLs.
        """
        ...


@runtime_checkable
class ScoredBackend(Protocol):
    """A backend whose models run out of process: the sweep scores it through a
    :class:`Scorer` instead of quantizing and evaluating a model in process."""

    def scorer(
        self,
        model: ModelConfig,
        protocol: EvalConfig,
        workdir: Path,
        *,
        group_size: int,
        calibration: torch.Tensor | None,
        bos: int | None = None,
    ) -> Scorer:
        """A scorer of ``model`` under the evaluation ``protocol`` whose intermediate files
        live in ``workdir``; ``calibration`` token ids (text, no BOS) for what the format
        calibrates; ``bos`` the id every evaluation window starts with, if any."""
        ...


BACKENDS = Registry(
    "backend",
    {
        "quanto": "impq.backends.quanto:QuantoBackend",
        "hqq": "impq.backends.hqq:HqqBackend",
        "gptq": "impq.backends.gptq:GptqBackend",
        "llamacpp": "impq.backends.llamacpp:LlamaCppBackend",
    },
)
"""Backend name -> ``module:class``; the one place where backends are registered."""


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``.

    Raises:
        ValueError: ``name`` is not registered; the message lists the valid names.
    """
    backend: Backend = BACKENDS.load(name)()
    return backend


def database_backends() -> list[str]:
    """Names of the registered calibrated backends that build a per-block database
    (:class:`DatabaseBackend`)."""
    return sorted(n for n in BACKENDS if _builds_database(BACKENDS.load(n)))


def _builds_database(backend: type) -> bool:
    return not getattr(backend, "data_free", True) and issubclass(backend, DatabaseBackend)


def stored_tensor_bytes(modules: Iterable[nn.Module], stored: Callable[[str], bool]) -> int:
    """Bytes of the state-dict tensors of ``modules`` whose key ``stored`` accepts."""
    return sum(
        t.numel() * t.element_size()
        for m in modules
        for key, t in m.state_dict().items()
        if stored(key)
    )


def backends_storing(bits: int) -> list[str]:
    """Names of the registered backends that store weights at ``bits`` bits."""
    return sorted(n for n in BACKENDS if bits in BACKENDS.load(n).supported_bits)


def check_bits(backend: str, bits: int, supported: frozenset[int], why: str = "") -> None:
    """Raise :class:`UnsupportedError` unless ``bits`` is one of ``supported``.

    The message names the backends that do store ``bits`` bits, after ``why`` (the
    backend's own reason, e.g. its library has no such type) when given.
    """
    if bits not in supported:
        others = backends_storing(bits)
        instead = f"backends storing {bits} bits: {others}" if others else "no backend does"
        reason = f" ({why})" if why else ""
        raise UnsupportedError(
            f"backend {backend!r} stores weights at {sorted(supported)} bits, not {bits}"
            f"{reason}; {instead}"
        )


def check_group_size(backend: str, weight: torch.Tensor, group_size: int) -> None:
    """Raise :class:`UnsupportedError` unless ``group_size`` divides every weight row."""
    if weight.ndim != 2:
        raise UnsupportedError(
            f"backend {backend!r} quantizes 2-D linear weights, got shape {tuple(weight.shape)}"
        )
    in_features = weight.shape[1]
    if group_size <= 0 or in_features % group_size:
        raise UnsupportedError(
            f"backend {backend!r} needs a group size dividing the input width {in_features}, "
            f"got {group_size}; choose a divisor of every linear's in_features"
        )


def assigned_linears(
    backend: str,
    model: nn.Module,
    assignment: dict[int, int],
    group_size: int,
    supported: frozenset[int],
    why: str = "",
) -> dict[str, tuple[nn.Linear, int]]:
    """Full module name -> (float linear, bits) of every linear the assignment quantizes.

    Checks everything before anything is changed, so a bad request leaves the model as
    it was. ``why`` is the backend's reason for the bits it refuses (:func:`check_bits`).

    Raises:
        UnsupportedError: unknown architecture, a block index out of range, unsupported
            bits, a group size that does not divide a linear's input width, or a linear
            that is already quantized.
    """
    try:
        layout = get_layout(model)
        n_blocks = len(decoder_blocks(model))
    except ValueError as err:
        raise UnsupportedError(f"backend {backend!r}: {err}") from None
    out: dict[str, tuple[nn.Linear, int]] = {}
    for block, bits in sorted(assignment.items()):
        if not 0 <= block < n_blocks:
            raise UnsupportedError(
                f"assignment names block {block}, but the model has blocks 0..{n_blocks - 1}"
            )
        check_bits(backend, bits, supported, why)
        for rel, module in block_linears(model, block).items():
            if type(module) is not nn.Linear:
                raise UnsupportedError(
                    f"backend {backend!r} quantizes float nn.Linear modules; block {block} "
                    f"{rel} is a {type(module).__name__} (already quantized?)"
                )
            name = f"{layout.blocks}.{block}.{rel}"
            try:
                check_group_size(backend, module.weight, group_size)
            except UnsupportedError as err:
                raise UnsupportedError(f"{name}: {err}") from None
            out[name] = (module, bits)
    return out


def linear_shapes(model: nn.Module, blocks: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """Block -> ``(out_features, in_features)`` of its linears, float or quantized."""
    shapes: dict[int, list[tuple[int, int]]] = {}
    for b in blocks:
        linears: list[Any] = list(block_linears(model, b).values())
        shapes[b] = [(int(m.out_features), int(m.in_features)) for m in linears]
    return shapes


def expected_bytes(
    model: nn.Module,
    assignment: dict[int, int],
    group_size: int,
    footprint: Footprint = SOLVER,
) -> int:
    """Stored bytes of ``assignment`` under ``footprint`` (default: the solver's), linear
    by linear."""
    shapes = linear_shapes(model, assignment)
    return sum(
        footprint.linear(out, inp, bits, group_size)
        for block, bits in assignment.items()
        for out, inp in shapes[block]
    )


def budget_bytes_for(
    model: nn.Module,
    budget_bits: float,
    group_size: int,
    precisions: Iterable[int],
    footprint: Footprint = SOLVER,
) -> int:
    """The byte budget of ``budget_bits`` average bits in ``footprint``'s bytes.

    The same interpolation as the solver's (:func:`impq.footprint.budget_bytes`) between
    the uniform models at ``precisions``; with the default footprint it is the budget the
    assignment was solved under.
    """
    blocks = range(len(decoder_blocks(model)))
    uniform = {
        p: expected_bytes(model, dict.fromkeys(blocks, p), group_size, footprint)
        for p in set(precisions)
    }
    return budget_bytes(budget_bits, uniform)


def check_within_budget(
    backend: Backend,
    model: nn.Module,
    budget_bits: float,
    precisions: Iterable[int],
    group_size: int,
    stored: int,
) -> int:
    """The backend's byte budget for ``budget_bits``; raise if ``stored`` exceeds it.

    Args:
        backend: the backend that stored the model (its footprint prices the budget).
        model: the model (float or quantized; only its linear shapes are read).
        budget_bits: the average bits the assignment was solved for.
        precisions: the precisions the budget was interpolated between.
        group_size: weights per scale/zero group.
        stored: bytes the quantized linears really store.

    Raises:
        OverBudgetError: ``stored`` is above the budget (names both and the excess).
    """
    budget = budget_bytes_for(model, budget_bits, group_size, precisions, backend.footprint(model))
    if stored > budget:
        raise OverBudgetError(
            f"backend {backend.name!r} stores {stored} bytes for a budget of {budget} bytes "
            f"({budget_bits} average bits, group size {group_size}): {stored - budget} bytes "
            "over. Either the assignment does not fit its budget or the backend's footprint "
            "(impq.footprint) does not match what it writes"
        )
    return budget


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` by ``module``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
