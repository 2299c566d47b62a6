"""What the cells of a sweep share: the float model (loaded once) and quantized blocks."""

from __future__ import annotations

import copy
import logging
import threading

from torch import nn

from impq.artifacts import read_tensors
from impq.backends import Backend, UnsupportedError, get_backend
from impq.backends.base import BlockwiseBackend, ScoredBackend, set_submodule
from impq.config import ModelConfig, Params
from impq.game import WeightQuantizer
from impq.models import block_linears, decoder_blocks, get_layout, load_model
from impq.pipeline.paths import calibration_path
from impq.pipeline.spqe import game_database

__all__ = ["BlockCache", "FloatModel", "from_database", "worker_cache", "worker_float_model"]

log = logging.getLogger(__name__)


def from_database(params: Params, engine: Backend) -> bool:
    """Whether the sweep assembles ``engine``'s models from the SPQE game's per-block
    database: a calibrated backend measured in process, under
    ``backends.calibrated_cells: database``."""
    return (
        not engine.data_free
        and not isinstance(engine, ScoredBackend)
        and params.backends.calibrated_cells == "database"
    )


class FloatModel:
    """The float model of ``params.model``, loaded once on first use and handed out as
    fresh models, so a sweep pays one load per process instead of one per cell (a GGUF
    source is dequantized on every load: about 17 s of a 30 s SmolLM2 cell).

    The loaded model itself is never changed. Safe to share between threads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.loads = 0
        """Times the model was read from its source (at most once)."""
        self._model: nn.Module | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> nn.Module:
        """The shared float model: read it, never change it."""
        with self._lock:
            if self._model is None:
                self._model = load_model(self.cfg)
                self.loads += 1
            return self._model

    def copy(self) -> nn.Module:
        """A deep copy that the caller owns and may change in place (quantize)."""
        return copy.deepcopy(self.model)

    def view(self) -> nn.Module:
        """A new module tree over the float model's own tensors (no tensor is copied).

        Replace its submodules freely; changing one of its tensors in place would change
        the float model.
        """
        source = self.model
        shared = {id(t): t for t in (*source.parameters(), *source.buffers())}
        view: nn.Module = copy.deepcopy(source, memo=shared)
        return view


class BlockCache:
    """Quantized blocks, made once per (backend, block, bits), and the :class:`FloatModel`
    every cell starts from.

    A data-free backend quantizes every linear from its own weight, so a model under any
    assignment can be assembled from blocks quantized one at a time; a
    :class:`~impq.backends.base.BlockwiseBackend` (GPTQ) quantizes every block of the
    model at once per precision, on the float model's activations. Under
    ``backends.calibrated_cells: database`` a calibrated backend's blocks are the weights
    of the SPQE game's per-block database instead (:func:`~impq.pipeline.spqe.game_database`:
    read from where the spqe stage keeps it, built there if missing), installed in the
    float model as the game installs them. Either way the modules (or weights) are shared
    (read-only) between the models of one sweep instead of being made again for every
    combination. Safe to share between threads (one lock around the assembly).

    Args:
        params: the sweep's params (model, group size, calibration set).
        float_model: the float model to start from; share one between the caches of a
            process so that it is loaded once (default: a new one, loaded on first use).
    """

    def __init__(self, params: Params, float_model: FloatModel | None = None) -> None:
        self.params = params
        self.float_model = float_model if float_model is not None else FloatModel(params.model)
        self.quantized = 0
        """Blocks quantized so far (each (backend, block, bits) at most once)."""
        self._blocks: dict[tuple[str, int], dict[int, dict[str, nn.Module]]] = {}
        self._sources: dict[tuple[str, int], nn.Module] = {}
        self._database_blocks: dict[tuple[str, int], dict[int, dict[str, nn.Parameter]]] = {}
        self._quantizers: dict[str, WeightQuantizer] = {}
        self._lock = threading.Lock()

    def assemble(self, backend: str, bits: dict[int, int]) -> tuple[nn.Module, int]:
        """A model with the quantized linears of every assigned block, the rest the float
        model's (shared with it for a data-free backend, see :meth:`FloatModel.view`; a
        copy made ready by :meth:`~impq.backends.base.BlockwiseBackend.assembled`
        otherwise). From the game's database (:func:`from_database`): the float model's
        view with the database's weights of every assigned block, in the float model's
        dtype: the model the SPQE game scores for ``bits``.

        Returns:
            The model and how many blocks were quantized now (not found cached); from the
            database, how many were read from it now.

        Raises:
            ValueError: from the database, ``bits`` uses a precision not on
                ``spqe.ladder``.
            UnsupportedError: from the database, ``backend`` builds none.
        """
        engine = get_backend(backend)
        if from_database(self.params, engine):
            return self._from_database(engine, bits)
        blockwise = None if engine.data_free else _blockwise(engine)
        model = self.float_model.view() if blockwise is None else self.float_model.copy()
        with self._lock:
            before = self.quantized
            for block, b in sorted(bits.items()):
                prefix = f"{get_layout(model).blocks}.{block}."
                for name, module in self._quantized(engine, blockwise, block, b).items():
                    set_submodule(model, prefix + name, module)
            new = self.quantized - before
        return (model if blockwise is None else blockwise.assembled(model)), new

    def _quantized(
        self, engine: Backend, blockwise: BlockwiseBackend | None, block: int, bits: int
    ) -> dict[str, nn.Module]:
        """Block ``block``'s quantized linears at ``bits`` (made now unless cached)."""
        done = self._blocks.setdefault((engine.name, bits), {})
        if block in done:
            return done[block]
        group = self.params.backends.group_size
        if blockwise is not None:  # one calibration pass for every block missing at bits
            reference = self.float_model.model
            missing = [i for i in range(len(decoder_blocks(reference))) if i not in done]
            calibration = read_tensors(calibration_path(self.params))[0]["input_ids"]
            done.update(blockwise.quantize_blocks(reference, missing, bits, group, calibration))
            self.quantized += len(missing)
        else:
            source = self._sources.get((engine.name, bits))
            if source is None:
                source = self._sources[engine.name, bits] = self.float_model.copy()
            engine.quantize(source, {block: bits}, group)
            prefix = f"{get_layout(source).blocks}.{block}."
            done[block] = {
                n: source.get_submodule(prefix + n) for n in block_linears(source, block)
            }
            self.quantized += 1
        return done[block]

    def _from_database(self, engine: Backend, bits: dict[int, int]) -> tuple[nn.Module, int]:
        """The float model's view with the game database's weights of every assigned block."""
        ladder = self.params.spqe.ladder
        if off := sorted(set(bits.values()) - set(ladder)):
            raise ValueError(
                f"backends.calibrated_cells: database: the assignment puts blocks at {off} "
                f"bits, not on spqe.ladder {ladder}, so the game's database holds no such "
                "blocks; add them to spqe.ladder or set calibrated_cells: sequential"
            )
        model = self.float_model.view()
        with self._lock:
            before = self.quantized
            for block, b in sorted(bits.items()):
                weights = self._database_block(engine, block, b)
                for name, linear in block_linears(model, block).items():
                    linear.register_parameter("weight", weights[name])
            new = self.quantized - before
        return model, new

    def _database_block(self, engine: Backend, block: int, bits: int) -> dict[str, nn.Parameter]:
        """Block ``block``'s weights at ``bits`` from the game's database, as the game
        installs them (read now unless cached)."""
        done = self._database_blocks.setdefault((engine.name, bits), {})
        if block not in done:
            quantize = self._quantizers.get(engine.name)
            if quantize is None:
                reference = self.float_model.model
                database = game_database(self.params, reference, engine.name)
                log.info("sweep: %s cells from the game's database %s", engine.name, database.key)
                quantize = self._quantizers[engine.name] = database.quantizer(reference)
            done[block] = {
                name: nn.Parameter(
                    quantize(m.get_parameter("weight").data, bits), requires_grad=False
                )
                for name, m in block_linears(self.float_model.model, block).items()
            }
            self.quantized += 1
        return done[block]


def _blockwise(engine: Backend) -> BlockwiseBackend:
    if not isinstance(engine, BlockwiseBackend):
        raise UnsupportedError(
            f"backend {engine.name!r} needs calibration and cannot quantize blocks on their "
            "own; set backends.calibrated_cells: sequential"
        )
    return engine


_FLOAT_MODELS: dict[str, FloatModel] = {}
_CACHES: dict[str, BlockCache] = {}
_WORKER_LOCK = threading.Lock()


def worker_float_model(cfg: ModelConfig) -> FloatModel:
    """This process's :class:`FloatModel` of ``cfg`` (one at a time): a sweep's cells on
    one worker (a Ray worker, or the stage's own process) load the model once."""
    key = cfg.model_dump_json()
    with _WORKER_LOCK:
        if key not in _FLOAT_MODELS:
            _FLOAT_MODELS.clear()
            _FLOAT_MODELS[key] = FloatModel(cfg)
        return _FLOAT_MODELS[key]


def worker_cache(params: Params, backend: str) -> BlockCache:
    """This process's :class:`BlockCache` for ``backend`` (one backend's blocks at a
    time), over :func:`worker_float_model`."""
    float_model = worker_float_model(params.model)
    key = f"{params.model.model_dump_json()}|{params.backends.group_size}|{backend}"
    if from_database(params, get_backend(backend)):  # the database it reads
        spqe = params.spqe
        key += f"|database|{spqe.ladder}|{spqe.calibration_bits}|{spqe.n_samples}"
    with _WORKER_LOCK:
        if key not in _CACHES:
            _CACHES.clear()  # free the previous backend's blocks
            _CACHES[key] = BlockCache(params, float_model)
        return _CACHES[key]
