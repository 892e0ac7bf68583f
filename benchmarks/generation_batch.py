"""Generation's compiled step (csrc/step.cpp, ``generation.stack_step``) against the eager step,
by batch size: what ``generation.MAX_ROWS`` is chosen from.

    PYTHONPATH=$PWD/src python benchmarks/generation_batch.py             # one thread
    PYTHONPATH=$PWD/src python benchmarks/generation_batch.py --threads 2

A 2-layer ``gatedrnn.LSTM`` in eval mode steps one token under ``torch.no_grad``, 20 tokens a
timing, compiled and eager alternated within each of ``--rounds`` rounds (the eager step by
taking the compiled call away; ``MAX_ROWS`` set aside for the compiled one); printed: the median of the per-round
ratios compiled / eager, per hidden size and batch.
"""
import argparse
import statistics
import time

import torch

import gatedrnn
from gatedrnn.torch_engine import compiled, generation
from gatedrnn.torch_engine.modules import base


def per_token(module, x, n=20):
    with torch.no_grad():
        module.step(x)
        t0 = time.perf_counter()
        for _ in range(n):
            module.step(x)
        return (time.perf_counter() - t0) / n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="256,1024")
    p.add_argument("--batches", default="1,2,4,8,16,32")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    assert compiled.pointwise() is not None, "the compiled kernels are off or could not be built"
    compiled_step = base.stack_step
    generation.MAX_ROWS = 1 << 30  # the compiled call at every batch, to see where it stops paying
    for H in map(int, args.sizes.split(",")):
        module = gatedrnn.LSTM(H, H, 2).eval()
        for B in map(int, args.batches.split(",")):
            x = torch.randn(B, H)
            ratios = []
            for _ in range(args.rounds):
                fast = per_token(module, x)
                base.stack_step = lambda *a: None  # the eager step
                try:
                    slow = per_token(module, x)
                finally:
                    base.stack_step = compiled_step
                ratios.append(fast / slow)
            print(f"H={H} B={B}: compiled / eager {statistics.median(ratios):.2f}", flush=True)


if __name__ == "__main__":
    main()
