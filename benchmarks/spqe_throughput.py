"""What one SPQE evaluation costs: the cached model game vs a plain forward vs re-quantizing.

All three evaluate configurations in the order SPQE does (the two endpoints, then the
steps of seeded permutation walks) on the same model and calibration batch, in one run:

- **cached**: :class:`impq.game.ModelGame` (every block quantized once at both
  precisions, weights swapped by reference, hidden states reused from the deepest block
  whose prefix was seen);
- **forward**: the model's own forward with the same dequantized weights installed
  (the baseline a user would write with the weights already quantized);
- **naive**: every block re-quantized at its bits for each configuration, then a
  forward (the first few configurations only: it is slow).

On CPU the three run one after another for each configuration, so all see the same
machine load (the ratios hold on a shared machine); on CUDA the cached walk is one call,
as in SPQE (one host synchronization).

The naive loop costs the same for every configuration, so its cost is taken as its ratio
to the forward of the same configurations (measured back to back) times the forward's
cost over the whole run. The endpoints are evaluated first and not timed (SPQE
evaluates them once per run). It
prints the blocks recomputed per evaluation and the cached game's time split (decoder
blocks, LM head and loss, the rest). On CUDA it also prints the achieved TFLOP/s
against the device's dense peak, counting 2·N·T FLOPs per forward (N parameters of the
blocks and the LM head, T tokens; attention scores are not counted). The last line reads
``speedup_vs_forward: X speedup_vs_naive: Y``.

    PYTHONPATH=. python benchmarks/spqe_throughput.py [--model models/ref-llama-12l]
        [--gguf-file F.gguf] [--calibration file.safetensors] [--samples 8] [--configs 29]
        [--dtype bfloat16] [--tiny llama --tiny-layers 12]

``--tiny ARCH`` benchmarks a randomly initialised :func:`impq.models.tiny.tiny_model`
on random token ids instead of ``--model`` (throughput only).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from impq.artifacts import read_tensors
from impq.backends import get_backend
from impq.config import ModelConfig
from impq.data import calibration_text, sample_windows, tokenize
from impq.estimate import PermutationSampling
from impq.estimate.permutation import seeded_permutations
from impq.eval import batch_nll
from impq.game import ModelGame, weight_quantizer
from impq.models import block_linears, block_param_counts, decoder_blocks, load_model
from impq.models.loading import load_tokenizer, resolve_device
from impq.models.tiny import tiny_model

# Dense peak TFLOP/s by device name fragment and dtype (vendor datasheets, SXM parts;
# float32 without tensor cores).
PEAK_TFLOPS = {
    "H200": {"float32": 67.0, "bfloat16": 989.0, "float16": 989.0},
    "H100": {"float32": 67.0, "bfloat16": 989.0, "float16": 989.0},
    "A100": {"float32": 19.5, "bfloat16": 312.0, "float16": 312.0},
    "A40": {"float32": 37.4, "bfloat16": 149.7, "float16": 149.7},
    "L4": {"float32": 30.3, "bfloat16": 121.0, "float16": 121.0},
}


def _model_and_calibration(
    args: argparse.Namespace,
) -> tuple[torch.nn.Module, torch.Tensor, str]:
    """The model, ``(samples, seqlen)`` calibration ids and the model's name."""
    if args.tiny:
        model = tiny_model(args.tiny, num_layers=args.tiny_layers).to(
            device=resolve_device(args.device), dtype=getattr(torch, args.dtype)
        )
        vocab = model.config.vocab_size
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab, (args.samples, args.seqlen), generator=gen)
        return model, ids, f"tiny {args.tiny}"
    cfg = ModelConfig(
        source=args.model, gguf_file=args.gguf_file, dtype=args.dtype, device=args.device
    )
    name = f"{args.model}{f' ({args.gguf_file})' if args.gguf_file else ''}"
    return load_model(cfg), _calibration(args, cfg), name


def _calibration(args: argparse.Namespace, cfg: ModelConfig) -> torch.Tensor:
    path = Path(args.calibration)
    if path.is_file():
        return read_tensors(path)[0]["input_ids"][: args.samples]
    text = calibration_text("heldout", Path(args.data_root))
    ids = tokenize(load_tokenizer(cfg), text)
    return sample_windows(ids, args.samples, args.seqlen, seed=0)


def _spqe_configs(n_players: int, n_configs: int) -> np.ndarray:
    """The endpoints, then ``n_configs`` walk steps, as SPQE evaluates them (seed 0)."""
    walker = PermutationSampling()
    per_perm = walker.evaluations_per_permutation(n_players)
    perms = seeded_permutations(0, range(-(-n_configs // per_perm)), n_players)
    steps = np.concatenate([walker.coalitions(p) for p in perms])[:n_configs]
    return np.concatenate([np.zeros((1, n_players), bool), np.ones((1, n_players), bool), steps])


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _forward_nll(model: torch.nn.Module, chunks: list[torch.Tensor]) -> float:
    total = sum(batch_nll(model, c).sum() for c in chunks)
    n_tokens = sum(c.shape[0] * (c.shape[1] - 1) for c in chunks)
    return float(total) / n_tokens


class _Naive:
    """Re-quantize every block from its float weight, then a plain forward."""

    def __init__(self, model: torch.nn.Module, backend: Any, group_size: int) -> None:
        self.model, self.backend, self.group_size = model, backend, group_size
        n_blocks = len(decoder_blocks(model))
        self.linears = [list(block_linears(model, i).values()) for i in range(n_blocks)]
        self.floats = [[m.weight.detach() for m in ms] for ms in self.linears]
        for bits in (4, 2):  # first use of the quantizer (kernels loaded), not timed
            backend.dequantize_weight(self.floats[0][0], bits, group_size)

    def __call__(self, config: np.ndarray, chunks: list[torch.Tensor]) -> float:
        """The NLL of ``config``; the model's weights are put back afterwards."""
        installed = [[m._parameters["weight"] for m in ms] for ms in self.linears]
        with torch.no_grad():
            for i, modules in enumerate(self.linears):
                for m, w in zip(modules, self.floats[i], strict=True):
                    q = self.backend.dequantize_weight(w, 2 if config[i] else 4, self.group_size)
                    m._parameters["weight"] = torch.nn.Parameter(q, requires_grad=False)
        value = _forward_nll(self.model, chunks)
        for modules, weights in zip(self.linears, installed, strict=True):
            for m, w in zip(modules, weights, strict=True):
                m._parameters["weight"] = w
        return value


def _flops(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, float]:
    """2·N·T FLOPs of one block and of the LM head over the calibration batch."""
    tokens = ids.numel()
    cfg = model.config
    return 2.0 * tokens * block_param_counts(model)[0], 2.0 * tokens * cfg.hidden_size * (
        cfg.vocab_size
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/ref-llama-12l", help="folder or hub id")
    parser.add_argument("--gguf-file", default=None, help="a GGUF file inside --model")
    parser.add_argument("--calibration", default="artifacts/data/calibration.safetensors")
    parser.add_argument("--data-root", default=os.environ.get("IMPQ_DATA_DIR", "../shared/data"))
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per forward")
    parser.add_argument("--backend", default="quanto")
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--configs", type=int, default=29, help="walk steps, cached + forward")
    parser.add_argument("--naive-configs", type=int, default=3, help="the first ones")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--no-split",
        action="store_true",
        help="on CUDA: no synchronization around the game's phases (no time split)",
    )
    parser.add_argument("--tiny", default=None, choices=["llama", "gemma2", "qwen3"])
    parser.add_argument("--tiny-layers", type=int, default=12)
    args = parser.parse_args()

    model, ids, model_name = _model_and_calibration(args)
    device = next(model.parameters()).device
    ids = ids.to(device)
    step = args.batch_size or len(ids)
    chunks = [ids[s : s + step] for s in range(0, len(ids), step)]
    n_blocks = len(decoder_blocks(model))
    configs = _spqe_configs(n_blocks, args.configs)
    walk = configs[2 : 2 + args.configs]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"model {model_name}: {n_blocks} blocks, {args.dtype}, on {name} "
        f"({torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load}); "
        f"calibration {tuple(ids.shape)} in chunks of {step}; backend {args.backend}, group {args.group_size}"
    )

    naive = _Naive(model, get_backend(args.backend), args.group_size)
    _sync()
    t0 = time.perf_counter()
    game = ModelGame(
        model,
        ids,
        weight_quantizer(args.backend, args.group_size),
        batch_size=args.batch_size,
        progress=False,
        timed=not args.no_split,
    )
    game(configs[:2])  # the endpoints, once per SPQE run
    _sync()
    setup_s = time.perf_counter() - t0
    blocks_before = game.n_block_evaluations
    seconds_before = dict(game.seconds)
    n_naive = min(args.naive_configs, len(walk))
    cached_values, forward_values = np.empty(len(walk)), np.empty(len(walk))
    naive_values = np.empty(n_naive)
    cached_s = forward_s = naive_s = forward_beside_naive_s = 0.0
    if device.type == "cuda":
        t0 = time.perf_counter()
        cached_values[:] = game(walk)
        cached_s = time.perf_counter() - t0
    for k, config in enumerate(walk):
        t0 = time.perf_counter()
        if device.type != "cuda":
            cached_values[k] = game(config[None])[0]
        t1 = time.perf_counter()
        game.install(config)  # the forward sees the game's weights for this config
        forward_values[k] = _forward_nll(model, chunks)
        _sync()
        t2 = time.perf_counter()
        cached_s, forward_s = cached_s + t1 - t0, forward_s + t2 - t1
        if k < n_naive:
            naive_values[k] = naive(config, chunks)
            _sync()
            naive_s += time.perf_counter() - t2
            forward_beside_naive_s += t2 - t1
    blocks = game.n_block_evaluations - blocks_before
    split = {k: game.seconds[k] - seconds_before[k] for k in game.seconds}
    game.restore()

    cached_per, forward_per = cached_s / len(walk), forward_s / len(walk)
    # naive and forward cost the same for every configuration: their ratio, measured
    # back to back, carries the naive loop over to the whole run's load
    naive_over_forward = naive_s / forward_beside_naive_s
    print(
        f"naive  : {n_naive} configs in {naive_s:.2f} s = {naive_s / n_naive:.3f} s/config, "
        f"{naive_over_forward:.2f} x the forward of the same configs"
    )
    print(f"forward: {len(walk)} configs in {forward_s:.2f} s = {forward_per:.3f} s/config")
    print(
        f"cached : {len(walk)} configs in {cached_s:.2f} s = {cached_per:.3f} s/config "
        f"(+ {setup_s:.2f} s one-time setup and endpoints)"
    )
    print(f"blocks recomputed per evaluation: {blocks / len(walk):.2f} of {n_blocks}")
    rest = split["total"] - split["blocks"] - split["head"]
    if device.type == "cuda" and args.no_split:
        print("cached time split: not measured (--no-split)")
    else:
        print(
            "cached time split: "
            + ", ".join(
                f"{label} {s:.2f} s ({100 * s / split['total']:.0f}%)"
                for label, s in (
                    ("blocks", split["blocks"]),
                    ("head and loss", split["head"]),
                    ("rest", rest),
                )
            )
        )
    rel_forward = np.abs(cached_values - forward_values) / np.abs(forward_values)
    rel_naive = np.abs(cached_values[:n_naive] - naive_values) / np.abs(naive_values)
    print(
        f"max relative difference of the NLL, cached vs forward {rel_forward.max():.2e}, "
        f"vs naive {rel_naive.max():.2e}"
    )
    naive_per = naive_over_forward * forward_per
    amortized = (cached_s + setup_s) / len(walk)
    print(f"speedup vs naive with the setup counted: {naive_per / amortized:.2f}")
    if split["head"] > 0:  # measured (CPU, or CUDA without --no-split)
        # every exact evaluation computes the logits and loss of every token at least
        head_per = split["head"] / len(walk)
        print(
            f"ceiling of any exact evaluator (head and loss alone, {head_per:.3f} s/config): "
            f"{forward_per / head_per:.2f} x the forward, {naive_per / head_per:.2f} x naive"
        )

    if device.type == "cuda":
        block_f, head_f = _flops(model, ids)
        forward_tf = (n_blocks * block_f + head_f) / forward_per / 1e12
        cached_tf = (blocks * block_f + len(walk) * head_f) / cached_s / 1e12
        peak = next((p[args.dtype] for k, p in PEAK_TFLOPS.items() if k in name), None)
        for label, tf in (("forward", forward_tf), ("cached", cached_tf)):
            share = (
                f" = {100 * tf / peak:.2f}% of the {peak:.0f} TFLOP/s dense peak" if peak else ""
            )
            print(f"{label} achieves {tf:.3f} TFLOP/s (2·N·T){share}")
    print(
        f"speedup_vs_forward: {forward_per / cached_per:.2f} "
        f"speedup_vs_naive: {naive_per / cached_per:.2f}"
    )


if __name__ == "__main__":
    main()
