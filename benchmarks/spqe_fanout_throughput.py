"""SPQE permutations per hour per worker, local runner and Ray workers, on one params file.

Runs ``prepare`` and then the SPQE sampling stage in a temporary folder, once with the
local runner and once with ``--workers`` Ray workers (a local Ray instance, through the
same Prefect fan-out as ``dvc repro``), and prints each run's permutations per hour per
worker (time inside the chunks: model load and block quantization, once per worker,
excluded and printed as setup) and overall (the stage's wall time, all included). Both
runs must write the same samples.

    PYTHONPATH=. python benchmarks/spqe_fanout_throughput.py --permutations 4
    PYTHONPATH=. python benchmarks/spqe_fanout_throughput.py --gguf-file F.gguf --model DIR
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from impq.artifacts import read_json
from impq.pipeline import prepare, spqe
from impq.pipeline.params import load_params


def _run(params_path: str, where: Path, args: argparse.Namespace, runner: str) -> bytes:
    raw = load_params(params_path).model_dump(mode="json")
    if args.model:
        raw["model"]["source"] = args.model
    if args.gguf_file:
        raw["model"]["gguf_file"] = args.gguf_file
    raw["spqe"]["permutations"] = args.permutations
    raw["runner"] = {
        **raw["runner"],
        "name": runner,
        "workers": args.workers,
        "chunk_permutations": 1,
    }
    raw["paths"] = {k: str(where / k) for k in raw["paths"]}
    raw["tracking"]["enabled"] = False
    params = type(load_params(params_path)).model_validate(raw)
    prepare.run(params)
    t0 = time.perf_counter()
    if runner == "local":
        spqe.run(params, progress=False)
    else:
        from prefect import flow

        from flows.fanout import PrefectFanout

        @flow(name="spqe-throughput")
        def sample() -> None:
            with PrefectFanout(params) as fanout:
                spqe.run(params, progress=False, fanout=fanout)

        sample()
    wall = time.perf_counter() - t0
    m = read_json(spqe.sampling_metrics_path(params))
    print(
        f"{runner}: {args.permutations} permutations on {m['workers']} worker(s): stage wall "
        f"{wall:.1f} s, setup {m['setup_seconds']:.1f} s per worker, "
        f"{3600 * args.permutations / m['chunk_seconds']:.1f} permutations/hour/worker "
        f"(walks only), {3600 * args.permutations / wall:.1f} permutations/hour overall"
    )
    return spqe.samples_path(params).read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", help="model.source instead of the params file's")
    parser.add_argument("--gguf-file", help="model.gguf_file")
    parser.add_argument("--permutations", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runners", default="local,ray")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for runner in args.runners.split(","):
            samples.append(_run(args.params, Path(tmp) / runner, args, runner))
    if len(samples) > 1:
        print("same samples:", all(s == samples[0] for s in samples))


if __name__ == "__main__":
    main()
