"""The model game: mean calibration NLL of a model whose blocks are at given precisions.

The precisions are a ladder, top first (``(4, 2)``: the paper's game, where a
configuration is a coalition of blocks at 2 bits); a configuration gives every block a
level, an index into the ladder. Every block's linear weights are quantized once at each
precision of the ladder and kept; a configuration installs them by reference. The hidden
state entering block ``i`` depends only on the levels of blocks ``0..i-1``, so states
are cached under that prefix
(:class:`~impq.game.states.StateCache`): a configuration restarts at the deepest block
whose prefix was seen before. Along a permutation walk that is at least the first block
whose precision changed, and prefixes shared across permutations are reused as well.
The cache changes which blocks are recomputed, never a value: the same blocks run on the
same inputs either way.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from impq.artifacts import fingerprint
from impq.backends import UnsupportedError, get_backend
from impq.backends.base import BACKENDS, DatabaseBackend
from impq.game.base import Game, check_coalitions
from impq.game.states import StateCache
from impq.models import block_linears, decoder_blocks, final_norm

__all__ = [
    "DEFAULT_CACHE_MB",
    "ModelGame",
    "WeightQuantizer",
    "check_game_backend",
    "game_backends",
    "model_fingerprint",
    "weight_quantizer",
]

log = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 256.0
"""State-cache memory when ``cache_mb`` is None, unless three prefix chains need more."""

WeightQuantizer = Callable[[torch.Tensor, int], torch.Tensor]
"""``(weight, bits) -> dequantized weight`` of the same shape and dtype."""


def game_backends() -> list[str]:
    """Names of the registered backends the game can be played on: data-free ones
    (:func:`weight_quantizer`) and calibrated ones that build a per-block database
    (:class:`~impq.backends.base.DatabaseBackend`)."""
    return sorted(n for n in BACKENDS if _playable(BACKENDS.load(n)))


def _playable(backend: type) -> bool:
    return bool(getattr(backend, "data_free", False)) or issubclass(backend, DatabaseBackend)


def check_game_backend(backend: str) -> None:
    """Raise unless the game can be played on ``backend`` (see :func:`game_backends`).

    Raises:
        UnsupportedError: it quantizes from calibration data and builds no per-block
            database; the message names ``spqe.backend`` and the backends that can.
        ValueError: ``backend`` is not registered.
    """
    if not _playable(BACKENDS.load(backend)):
        raise UnsupportedError(
            f"spqe.backend: {backend!r} cannot play the SPQE game (it quantizes from "
            "calibration data and builds no per-block database); set spqe.backend to one "
            f"of {game_backends()} and apply the assignment with {backend!r} afterwards"
        )


def weight_quantizer(backend: str, group_size: int) -> WeightQuantizer:
    """The weight quantizer of a data-free backend, for use inside the game.

    Raises:
        UnsupportedError: the backend is not ``data_free`` (it quantizes from calibration
            data). One that builds a per-block database plays the game on that database's
            quantizer instead; the others cannot play it (:func:`check_game_backend`).
        ValueError: ``backend`` is not registered.
    """
    check_game_backend(backend)
    impl = get_backend(backend)
    if not impl.data_free:
        raise UnsupportedError(
            f"backend {backend!r} quantizes from calibration data, not a weight alone: "
            "play the game on its per-block database "
            "(backend.weight_database(...).quantizer(model))"
        )

    def quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
        return impl.dequantize_weight(weight, bits, group_size)

    return quantize


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's architecture and every parameter's contents."""
    config = getattr(model, "config", None)
    parts: list[str | torch.Tensor] = [config.to_json_string() if config is not None else ""]
    for name, p in sorted(model.state_dict().items()):
        parts += [name, p]
    return fingerprint(*parts)


class ModelGame(Game):
    """Players are decoder blocks; ``v(x)`` is the mean per-token calibration NLL with
    every block ``i`` at precision ``ladder[x_i]`` (for the two-level ladder ``(4, 2)``:
    the blocks of the coalition at 2 bits, the others at 4).

    The model's weights are swapped while the game lives; :meth:`restore` (or leaving a
    ``with`` block) puts the original weights back.

    Args:
        ladder: the precisions of the levels, strictly descending, at least two.
        cache_mb: memory for cached hidden states, in MiB. None: :data:`DEFAULT_CACHE_MB`,
            or room for three prefix chains (``3 · n_players`` states, what a permutation
            walk needs not to thrash, see :mod:`impq.game.states`) when that is more.
            At least one chain is always kept.
        timed: measure :attr:`seconds` exactly (on CUDA it synchronizes around each
            phase, which costs time; on CPU the timings are always exact).
        quantizer_key: what ``quantize``'s weights depend on beyond the model and the
            precisions (a per-block database's key); it enters :meth:`fingerprint`.

    Attributes:
        n_block_evaluations: decoder-block forward passes over the calibration set spent
            on evaluations (the one-time check against the model's forward is not
            counted), to measure what prefix reuse saves (a full forward costs
            ``n_players``).
        cache_mb: memory the state cache may use, in MiB, as sized.
        seconds: wall time of the evaluations split into ``blocks`` (decoder blocks),
            ``head`` (final norm, LM head and loss) and ``total`` (whole value function).
        quantizer_key: as given.
    """

    def __init__(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        quantize: WeightQuantizer,
        ladder: Sequence[int] = (4, 2),
        batch_size: int | None = None,
        progress: bool = True,
        cache_mb: float | None = None,
        timed: bool = False,
        quantizer_key: str = "",
    ) -> None:
        ladder = tuple(int(b) for b in ladder)
        if len(ladder) < 2 or any(a <= b for a, b in itertools.pairwise(ladder)):
            raise ValueError(
                f"ladder {ladder} must list at least two precisions, strictly descending"
            )
        blocks = decoder_blocks(model)
        super().__init__(len(blocks), len(ladder))
        if input_ids.ndim != 2 or input_ids.shape[1] < 2:
            raise ValueError(f"input_ids must be (n, T>=2) token ids, got {tuple(input_ids.shape)}")
        self.model, self.blocks = model, blocks
        self.ladder = ladder
        self.device = next(model.parameters()).device
        ids = input_ids.to(self.device)
        step = batch_size or len(ids)
        self._chunks = [ids[s : s + step] for s in range(0, len(ids), step)]
        self._n_tokens = ids.shape[0] * (ids.shape[1] - 1)
        self._calibration_fingerprint = fingerprint(input_ids)
        self._model_fingerprint = model_fingerprint(model)
        self.quantizer_key = quantizer_key

        self._linears = [list(block_linears(model, i).values()) for i in range(self.n_players)]
        self._original = [[m.get_parameter("weight") for m in ms] for ms in self._linears]
        self._weights = self._quantize_all(quantize, progress)

        self._block_kwargs, inputs = self._capture()
        self._embeddings = inputs
        state_bytes = sum(t.numel() * t.element_size() for t in inputs)
        room = DEFAULT_CACHE_MB if cache_mb is None else cache_mb
        capacity = int(room * 2**20 // max(state_bytes, 1))
        if cache_mb is None:
            capacity = max(capacity, 3 * self.n_players)
        self._states = StateCache(self.n_players, capacity)
        self.cache_mb = self._states.capacity * state_bytes / 2**20
        self._installed: np.ndarray | None = None
        self._last: tuple[np.ndarray, torch.Tensor] | None = None
        self._timed = timed and self.device.type == "cuda"
        self.n_block_evaluations = 0
        self.seconds = {"blocks": 0.0, "head": 0.0, "total": 0.0}
        self._check_against_full_forward()
        self.n_block_evaluations = 0  # the check is not an evaluation
        self.seconds = dict.fromkeys(self.seconds, 0.0)

    @property
    def high_bits(self) -> int:
        """The top of the ladder (level 0)."""
        return self.ladder[0]

    @property
    def low_bits(self) -> int:
        """The bottom of the ladder (the last level)."""
        return self.ladder[-1]

    def _quantize_all(
        self, quantize: WeightQuantizer, progress: bool
    ) -> list[list[list[nn.Parameter]]]:
        """Per block, per level: the block's linear weights at that level's precision."""
        weights = []
        with torch.no_grad():
            for modules in tqdm(self._linears, desc="quantize blocks", disable=not progress):
                weights.append(
                    [
                        [
                            nn.Parameter(
                                quantize(m.get_parameter("weight").data, bits), requires_grad=False
                            )
                            for m in modules
                        ]
                        for bits in self.ladder
                    ]
                )
        return weights

    @torch.inference_mode()
    def _capture(self) -> tuple[list[list[dict[str, Any]]], list[torch.Tensor]]:
        """Per chunk: the hidden state entering block 0 and every block's call kwargs."""
        kwargs: list[list[dict[str, Any]]] = [[] for _ in range(self.n_players)]
        inputs: list[torch.Tensor] = []

        def hook(index: int) -> Callable[..., None]:
            def record(module: nn.Module, args: tuple, kw: dict[str, Any]) -> None:
                if len(args) > 1:
                    raise UnsupportedError(
                        f"decoder block {index} is called with {len(args)} positional "
                        "arguments; the model game supports block(hidden, **kwargs) only"
                    )
                hidden = args[0] if args else kw["hidden_states"]
                kwargs[index].append({k: v for k, v in kw.items() if k != "hidden_states"})
                if index == 0:
                    inputs.append(hidden)

            return record

        handles = [
            block.register_forward_pre_hook(hook(i), with_kwargs=True)
            for i, block in enumerate(self.blocks)
        ]
        try:
            for chunk in self._chunks:
                self.model(input_ids=chunk, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        return kwargs, inputs

    def _head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        model: Any = self.model
        norm = final_norm(model)
        logits = model.get_output_embeddings()(hidden if norm is None else norm(hidden))
        config = model.config
        if getattr(config, "logits_scaling", None):  # Granite
            logits = logits / config.logits_scaling
        if getattr(config, "logit_scale", None):  # Cohere
            logits = logits * config.logit_scale
        cap = getattr(config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.inference_mode()
    def _check_against_full_forward(self) -> None:
        """The block-by-block path must reproduce the model's own forward (float weights)."""
        from impq.eval import batch_nll

        full = sum(batch_nll(self.model, c).sum().item() for c in self._chunks) / self._n_tokens
        ours = self._run_blocks(0).item() / self._n_tokens
        if not np.isclose(ours, full, rtol=1e-4, atol=1e-6) and np.isfinite(full):
            raise UnsupportedError(
                f"block-by-block NLL {ours:.6g} differs from the model's forward {full:.6g}: "
                f"{type(self.model).__name__} does something between its blocks or in its "
                "head that the model game does not reproduce"
            )

    def _clock(self) -> float:
        if self._timed:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _run_blocks(
        self,
        first: int,
        start: list[torch.Tensor] | None = None,
        fresh: dict[int, list[torch.Tensor]] | None = None,
        chunks: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Summed NLL (a float64 scalar on the model's device) with the installed
        weights over the calibration chunks ``chunks`` (None: all), computing blocks
        ``first`` onwards from the states ``start`` (None: the embeddings).

        The states entering blocks after ``first`` are appended to ``fresh`` (depth ->
        per-chunk states) when it is given (all chunks only). Nothing here waits for the
        device: the caller reads the values once per call.
        """
        start = self._embeddings if start is None else start
        if fresh is not None:
            fresh.update({i: [] for i in range(first + 1, self.n_players)})
        total: torch.Tensor | None = None
        for c in range(len(self._chunks)) if chunks is None else chunks:
            chunk = self._chunks[c]
            t0 = self._clock()
            hidden = start[c]
            for i in range(first, self.n_players):
                if fresh is not None and i > first:
                    fresh[i].append(hidden)
                out = self.blocks[i](hidden, **self._block_kwargs[i][c])
                hidden = out[0] if isinstance(out, tuple) else out
            t1 = self._clock()
            logits = self._head_logits(hidden[:, :-1]).flatten(0, 1).float()
            nll = F.cross_entropy(logits, chunk[:, 1:].flatten(), reduction="none")
            # summed in float64 chunk by chunk, in order, as the values always were
            part = nll.double().sum()
            total = part if total is None else total + part
            self.seconds["blocks"] += t1 - t0
            self.seconds["head"] += self._clock() - t1
        assert total is not None  # there is at least one chunk
        return total

    def install(self, config: np.ndarray) -> None:
        """Install ``config``'s weights in the model (only the blocks whose precision
        changed), e.g. to run the model's own forward with the game's weights.

        Raises:
            ValueError: ``config`` is not one level (a boolean for two levels) per block.
        """
        config = np.asarray(config)
        if config.shape != (self.n_players,):
            raise ValueError(
                f"a configuration has one boolean per block (a level, 0 = top, with more than "
                f"two precisions) ({self.n_players} blocks), got shape {config.shape}"
            )
        config = check_coalitions(config, self.n_players, self.n_levels)[0]
        changed = (
            np.arange(self.n_players)
            if self._installed is None
            else np.flatnonzero(config != self._installed)
        )
        for i in changed:
            for module, weight in zip(
                self._linears[i], self._weights[i][int(config[i])], strict=True
            ):
                module._parameters["weight"] = weight
        self._installed = config.copy()

    @torch.inference_mode()
    def value_function(self, coalitions: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        totals = []
        for config in coalitions:
            if self._last is None or not np.array_equal(self._last[0], config):
                self.install(config)
                first, start = self._states.deepest(config)
                fresh: dict[int, list[torch.Tensor]] = {}
                total = self._run_blocks(first, start, fresh)
                self.n_block_evaluations += self.n_players - first
                self._states.store(config, first, fresh)
                self._last = (config.copy(), total)
            totals.append(self._last[1])
        if not totals:
            return np.empty(0)
        out = torch.stack(totals).cpu().numpy() / self._n_tokens  # the one host sync
        self.seconds["total"] += time.perf_counter() - t0
        return out

    def restore(self) -> None:
        """Put the model's original weights back."""
        for modules, weights in zip(self._linears, self._original, strict=True):
            for module, weight in zip(modules, weights, strict=True):
                module._parameters["weight"] = weight
        self._installed, self._last = None, None
        self._states.clear()

    def __enter__(self) -> ModelGame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def fingerprint(self) -> str:
        return fingerprint(
            type(self).__name__,
            self._model_fingerprint,
            self._calibration_fingerprint,
            "/".join(str(b) for b in self.ladder),  # "4/2": as before ladders
            *([self.quantizer_key] if self.quantizer_key else []),
        )

    @property
    def model_fingerprint(self) -> str:
        """Hash of the float model this game quantizes."""
        return self._model_fingerprint

    @property
    def calibration_fingerprint(self) -> str:
        """Hash of the calibration token ids."""
        return self._calibration_fingerprint

    # -- evaluation on part of the calibration set (searches that screen candidates) --

    @property
    def n_chunks(self) -> int:
        """Calibration chunks (``batch_size`` sequences each) the game evaluates on."""
        return len(self._chunks)

    def chunk_tokens(self, chunks: Sequence[int]) -> int:
        """Predicted tokens in the calibration chunks ``chunks``."""
        return sum(self._chunks[c].shape[0] * (self._chunks[c].shape[1] - 1) for c in chunks)

    @torch.inference_mode()
    def subset_values(self, coalitions: np.ndarray, chunks: Sequence[int]) -> np.ndarray:
        """Mean per-token NLL of each coalition on the calibration chunks ``chunks`` only.

        The state entering a block depends on the prefix, not on which chunks are asked
        for, so evaluation starts at the deepest cached prefix like :meth:`value_function`;
        this method reads the prefix cache but adds nothing to it, and counts nothing in
        :attr:`n_evaluations` (the caller counts its own evaluations).

        Raises:
            ValueError: ``chunks`` is empty, repeats a chunk or names one that does not exist.
        """
        chunks = [int(c) for c in chunks]
        if not chunks or len(set(chunks)) != len(chunks):
            raise ValueError(f"chunks must be distinct and non-empty, got {chunks}")
        if bad := [c for c in chunks if not 0 <= c < len(self._chunks)]:
            raise ValueError(f"chunks {bad} do not exist; the game has {len(self._chunks)}")
        t0 = time.perf_counter()
        totals = []
        for config in check_coalitions(coalitions, self.n_players, self.n_levels):
            self.install(config)
            first, cached = self._states.deepest(config)
            totals.append(self._run_blocks(first, cached, chunks=chunks))
        out = torch.stack(totals).cpu().numpy() / self.chunk_tokens(chunks)  # one host sync
        self.seconds["total"] += time.perf_counter() - t0
        return out
