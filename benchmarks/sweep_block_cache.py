"""Quantization time of a sweep: every combination quantized from scratch vs the block cache.

Both arms quantize the same assignments (seeded random 2/4-bit assignments, as many as a
default sweep has methods x budgets) with the same backends, in one run; loading is not
timed (the sweep loads the float model once per process). The direct
arm quantizes every block of every assignment; the cached arm shares one
:class:`impq.pipeline.sweep.BlockCache` per backend (each block once per bit width), as
the ``sweep`` flow does. The last line reads ``speedup: <ratio>``.

    PYTHONPATH=. python benchmarks/sweep_block_cache.py [--model models/ref-llama-12l] [--combinations 18]
"""

from __future__ import annotations

import argparse

import numpy as np

from impq.models import decoder_blocks, load_model
from impq.pipeline import sweep
from impq.pipeline.params import parse_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/ref-llama-12l")
    parser.add_argument("--backends", nargs="+", default=["quanto", "hqq"])
    parser.add_argument("--combinations", type=int, default=18, help="per backend")
    parser.add_argument("--group-size", type=int, default=64)
    args = parser.parse_args()

    params = parse_params(
        {
            "model": {"source": args.model, "device": "cpu"},
            "backends": {"names": args.backends, "group_size": args.group_size},
        }
    )
    n_blocks = len(decoder_blocks(load_model(params.model)))
    rng = np.random.default_rng(0)
    assignments = [
        {i: int(b) for i, b in enumerate(rng.choice([2, 4], n_blocks))}
        for _ in range(args.combinations)
    ]
    totals = {"direct": 0.0, "cached": 0.0}
    blocks = {"direct": 0, "cached": 0}
    for backend in args.backends:
        cache = sweep.BlockCache(params)
        for bits in assignments:
            for arm in ("direct", "cached"):  # interleaved: both see the same machine load
                _, facts = sweep.quantize_one(
                    params, backend, bits, cache=cache if arm == "cached" else None
                )
                totals[arm] += facts["quantize_seconds"]
                blocks[arm] += facts["blocks_quantized"]
    for arm in totals:
        print(f"{arm:7} {totals[arm]:8.2f} s  {blocks[arm]:5d} blocks quantized")
    print(f"speedup: {totals['direct'] / totals['cached']:.2f}")


if __name__ == "__main__":
    main()
