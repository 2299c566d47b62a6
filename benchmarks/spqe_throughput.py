"""Configurations per second: naive re-quantize + full forward vs the cached model game.

Both evaluate the same configurations (consecutive steps of SPQE permutation walks) on
the same model and calibration batch, in one run. The naive loop quantizes every block
at its bits for each configuration and runs the whole model; the cached game quantizes
each block once at both precisions, swaps weights by reference and restarts from the
first block whose precision changed. The last line reads ``speedup: <ratio>``.

    python benchmarks/spqe_throughput.py [--model models/ref-llama-12l] [--samples 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from impq.artifacts import read_tensors
from impq.backends import get_backend
from impq.config import ModelConfig
from impq.data import calibration_text, sample_windows, tokenize
from impq.estimate import PermutationSampling
from impq.eval import batch_nll
from impq.game import ModelGame, weight_quantizer
from impq.models import block_linears, block_param_counts, decoder_blocks, load_model
from impq.models.loading import load_tokenizer

# Dense peak TFLOP/s by device name fragment and dtype (vendor datasheets, SXM parts).
PEAK_TFLOPS = {
    "H200": {"float32": 67.0, "bfloat16": 989.0, "float16": 989.0},
    "H100": {"float32": 67.0, "bfloat16": 989.0, "float16": 989.0},
    "A100": {"float32": 19.5, "bfloat16": 312.0, "float16": 312.0},
    "L4": {"float32": 30.3, "bfloat16": 121.0, "float16": 121.0},
}


def _calibration(args: argparse.Namespace, cfg: ModelConfig) -> torch.Tensor:
    path = Path(args.calibration)
    if path.is_file():
        return read_tensors(path)[0]["input_ids"][: args.samples]
    text = calibration_text("heldout", Path(args.data_root))
    ids = tokenize(load_tokenizer(cfg), text)
    return sample_windows(ids, args.samples, args.seqlen, seed=0)


def _walk_configs(n_players: int, n_configs: int) -> np.ndarray:
    """Configurations in the order SPQE evaluates them (seeded permutation walks)."""
    walker = PermutationSampling()
    rng = np.random.default_rng(0)
    rows = []
    while sum(len(r) for r in rows) < n_configs:
        rows.append(walker._walk(rng.permutation(n_players)))
    return np.concatenate(rows)[:n_configs]


def _naive(model, ids, configs, backend, group_size, high, low) -> tuple[np.ndarray, float]:
    n_blocks = len(decoder_blocks(model))
    linears = [list(block_linears(model, i).values()) for i in range(n_blocks)]
    originals = [[m.weight.data for m in ms] for ms in linears]
    values = []
    _sync()
    t0 = time.perf_counter()
    for config in configs:
        with torch.no_grad():
            for i, modules in enumerate(linears):
                bits = low if config[i] else high
                for m, w in zip(modules, originals[i], strict=True):
                    m.weight.data = backend.dequantize_weight(w, bits, group_size)
        total = batch_nll(model, ids).sum().item()
        values.append(total / (ids.shape[0] * (ids.shape[1] - 1)))
    _sync()
    seconds = time.perf_counter() - t0
    for modules, weights in zip(linears, originals, strict=True):
        for m, w in zip(modules, weights, strict=True):
            m.weight.data = w
    return np.array(values), seconds


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _block_flops(model, ids: torch.Tensor) -> tuple[float, float]:
    """(FLOPs of one block, FLOPs of the head) over the calibration batch."""
    n, t = ids.shape
    cfg = model.config
    params = block_param_counts(model)[0]
    heads, head_dim = (
        cfg.num_attention_heads,
        getattr(cfg, "head_dim", None) or (cfg.hidden_size // cfg.num_attention_heads),
    )
    attention = 4 * n * t * t * heads * head_dim  # QK^T and PV, full square (upper bound)
    return 2 * n * t * params + attention, 2 * n * t * cfg.hidden_size * cfg.vocab_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/ref-llama-12l")
    parser.add_argument("--calibration", default="artifacts/data/calibration.safetensors")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--backend", default="quanto")
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--naive-configs", type=int, default=4)
    parser.add_argument("--cached-configs", type=int, default=33)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()

    cfg = ModelConfig(source=args.model, dtype=args.dtype, device="auto")
    model = load_model(cfg)
    device = next(model.parameters()).device
    ids = _calibration(args, cfg).to(device)
    n_blocks = len(decoder_blocks(model))
    configs = _walk_configs(n_blocks, max(args.naive_configs, args.cached_configs))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(
        f"model {args.model} ({n_blocks} blocks, {args.dtype}) on {name} "
        f"({torch.get_num_threads()} threads); calibration {tuple(ids.shape)}; "
        f"backend {args.backend}, group {args.group_size}"
    )

    backend = get_backend(args.backend)
    naive_values, naive_s = _naive(
        model, ids, configs[: args.naive_configs], backend, args.group_size, 4, 2
    )
    naive_rate = args.naive_configs / naive_s
    print(f"naive : {args.naive_configs} configs in {naive_s:.2f} s = {naive_rate:.3f} configs/s")

    _sync()
    t0 = time.perf_counter()
    game = ModelGame(model, ids, weight_quantizer(args.backend, args.group_size), progress=False)
    _sync()
    setup_s = time.perf_counter() - t0
    blocks_before = game.n_block_evaluations
    t0 = time.perf_counter()
    cached_values = game(configs[: args.cached_configs])
    _sync()
    cached_s = time.perf_counter() - t0
    blocks = game.n_block_evaluations - blocks_before
    game.restore()
    cached_rate = args.cached_configs / cached_s
    print(
        f"cached: {args.cached_configs} configs in {cached_s:.2f} s = {cached_rate:.3f} configs/s "
        f"(+ {setup_s:.2f} s one-time setup; {blocks / args.cached_configs:.2f} of "
        f"{n_blocks} blocks per config)"
    )
    rel = np.abs(cached_values[: args.naive_configs] - naive_values) / np.abs(naive_values)
    print(f"max relative difference cached vs naive NLL: {rel.max():.2e}")
    amortized = args.cached_configs / (cached_s + setup_s)
    print(f"speedup with the setup counted: {amortized / naive_rate:.2f}")

    if device.type == "cuda":
        block_f, head_f = _block_flops(model, ids)
        tflops = (blocks * block_f + args.cached_configs * head_f) / cached_s / 1e12
        peak = next((p[args.dtype] for k, p in PEAK_TFLOPS.items() if k in name), None)
        share = f" = {100 * tflops / peak:.2f}% of the {peak:.0f} TFLOP/s peak" if peak else ""
        print(f"cached evaluator achieves {tflops:.3f} TFLOP/s{share}")
    print(f"speedup: {cached_rate / naive_rate:.2f}")


if __name__ == "__main__":
    main()
