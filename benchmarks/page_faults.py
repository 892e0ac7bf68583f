"""Minor page faults and system time of a training step's forward and backward, apart: the fused
engine's module and ``torch.nn``'s (where it computes the configuration), per cell and option, after
``--warmup`` steps, the median of ``--steps`` steps (``resource.getrusage``, the process's own counts).
What a step's fresh memory costs where the allocator gives freed memory back to the system.

    python benchmarks/page_faults.py --threads 1 --json out.json
    GATEDRNN_SCRATCH=0 python benchmarks/page_faults.py --threads 1   # the backward's temporaries afresh
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from gatedrnn.experiments import bench

CONFIGS = (("lstm", {}), ("peephole", {}), ("lstm", {"layer_norm": True}), ("lstm", {"zoneout": 0.1}), ("gru", {}))


def measure(cell: str, options: dict, engine: str, size: int, warmup: int, steps: int) -> dict:
    cfg = bench.BenchConfig(module_options=options)
    module = bench.make_module(engine, cell, size, cfg)
    x, gy = bench._inputs(cfg, size)
    rows = []
    for i in range(warmup + steps):
        module.zero_grad(set_to_none=True)
        x.grad = None
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        y = module(x)[0]
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        y.backward(gy)
        r2, t2 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if i >= warmup:
            rows.append((r1.ru_minflt - r0.ru_minflt, r2.ru_minflt - r1.ru_minflt, 1e3 * (r2.ru_stime - r0.ru_stime),
                         1e3 * (t2 - t0)))
    med = [statistics.median(v) for v in zip(*rows)]
    return {"cell": cell, "options": options, "engine": engine, "size": size, "forward_faults": med[0],
            "backward_faults": med[1], "system_ms": med[2], "step_ms": med[3]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    args = bench.script_args(p, argv)
    rows = []
    print(f"{'cell':9} {'options':22} {'engine':6} {'fwd faults':>10} {'bwd faults':>10} {'sys ms':>7} {'step ms':>8}")
    for cell, options in CONFIGS:
        for engine in ("fused", "torch"):
            if engine == "torch" and (options or cell == "peephole"):
                continue  # torch.nn does not compute it
            r = measure(cell, options, engine, args.size, args.warmup, args.steps)
            rows.append(r)
            print(f"{cell:9} {str(options):22} {engine:6} {r['forward_faults']:>10.0f} {r['backward_faults']:>10.0f} "
                  f"{r['system_ms']:>7.1f} {r['step_ms']:>8.1f}", flush=True)
    if args.json:
        bench.write_rows(args.json, rows, threads=torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
