"""What zoneout's two ``(T, B, H)`` masks of a call cost: ``regularisation.zoneout_mask`` on the
compiled hash (``csrc/dropout.cpp``'s ``hash_mask``), the same with ``torch.rand`` (what runs
without the kernels), and the hash written with torch's integer operations (the bit-identical
twin the tests use, timed to show why it is not the fallback). Medians of ``--rounds``.

    python benchmarks/zoneout_masks.py --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from gatedrnn.experiments import bench
from gatedrnn.torch_engine import regularisation

def eager_hash_mask(shape, p, seed):
    """The kernel's mask from its twin in torch's int64 operations (``regularisation.hash_of_indices``)."""
    h = regularisation.hash_of_indices(torch.Size(shape).numel(), seed)
    return (h < regularisation.dropout_threshold(p)).float().view(shape)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="64,32,512", help="T,B,H (default 64,32,512)")
    p.add_argument("--p", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=9)
    args = bench.script_args(p, argv)
    shape, like = tuple(int(v) for v in args.shape.split(",")), torch.zeros(1)

    def two(hashed):
        def fn():
            regularisation.HASHED_ZONEOUT = hashed
            return [regularisation.zoneout_mask(shape, args.p, like, None) for _ in range(2)]
        return fn

    fns = {"hash": two(True), "rand": two(False), "eager_hash": lambda: [eager_hash_mask(shape, args.p, 12345) for _ in range(2)]}
    try:
        times = bench.interleaved(fns, args.rounds)
    finally:
        regularisation.HASHED_ZONEOUT = True
    row = {"shape": shape, "p": args.p, **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}}
    print(", ".join(f"{k} {v:.2f}" for k, v in row.items() if k.endswith("_ms")), "(two masks)")
    if args.json:
        bench.write_rows(args.json, [row], threads=torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
