"""The no-grad forward's floor: how much of the fused engine's forward is matrix products and
weight reorders, against ``torch.nn``'s whole forward. The fused forward runs under
``torch.profiler`` (the products' and reorders' own time: ``mkldnn::_linear_pointwise``,
``_reorder_linear_weight``, ``aten::mm``/``addmm``); the fused and ``torch.nn`` forwards are then
timed interleaved, without the profiler. ``floor / torch.nn`` is the least the fused forward's
ratio can be while it runs these products; ``fused / torch.nn`` what it is. Two more figures say
where the rest goes, per step: ``loop us``, the same forward at ``H=8, B=1`` (products and
elementwise work next to nothing: the loop's Python and dispatch), and for the LSTM family
``kernel us``, the compiled step (``lstm_forward``, adding the input) alone on operands of the
measured shape.

    python benchmarks/forward_floor.py --cells lstm,peephole,cifg,gru --size 512 --threads 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from gatedrnn.experiments import bench
from gatedrnn.torch_engine import compiled

PRODUCTS = ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm")
REORDERS = ("mkldnn::_reorder_linear_weight",)


def per_step(module, x, rounds: int) -> float:
    """Microseconds per step of ``module``'s no-grad forward on ``x``, the median of ``rounds``."""
    with torch.no_grad():
        module(x)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times) / x.shape[0]


def kernel_per_step(cell: str, module, H: int, T: int, B: int, rounds: int):
    """Microseconds per step of the LSTM family's compiled step alone (``None`` for other cells, or
    where the kernels are not built)."""
    k = compiled.pointwise()
    if k is None or cell not in ("lstm", "peephole", "cifg"):
        return None
    G = module.cell.num_gates
    a, ax = torch.randn(T, B, G * H) * 0.1, torch.randn(T, B, G * H) * 0.1
    gt, cp, cn, h = torch.empty(B, G * H), torch.randn(B, H), torch.empty(B, H), torch.empty(B, H)
    peep = torch.randn(3 * H) if cell == "peephole" else None
    times = []
    for _ in range(rounds + 1):
        a_r = a.clone()
        start = time.perf_counter()
        for t in range(T):
            k.lstm_forward(a_r[t], ax[t], gt, cp, cn, h, cell == "cifg", peep, None, None, None, None)
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times[1:]) / T


def measure(cell: str, H: int, T: int, B: int, calls: int, rounds: int) -> dict:
    torch.manual_seed(0)
    cfg = bench.BenchConfig(seq_len=T, batch_size=B)
    fused, ref = bench.make_module("fused", cell, H, cfg), bench.make_module("torch", cell, H, cfg)
    x = torch.randn(T, B, H)
    with torch.no_grad():
        for _ in range(3):
            fused(x), ref(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                fused(x)
        own = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        products = sum(own.get(k, 0.0) for k in PRODUCTS) / calls / 1e3  # ms per forward
        reorders = sum(own.get(k, 0.0) for k in REORDERS) / calls / 1e3
        times = bench.interleaved({"fused": lambda: fused(x), "torch": lambda: ref(x)}, rounds)
    tf, tr = times["fused"], times["torch"]
    nn_ms = 1e3 * statistics.median(tr)
    return {"cell": cell, "size": H, "threads": torch.get_num_threads(), "products_ms": products,
            "loop_us": per_step(bench.make_module("fused", cell, 8, cfg), torch.randn(T, 1, 8), rounds),
            "kernel_us": kernel_per_step(cell, fused, H, T, B, rounds),
            "reorders_ms": reorders, "fused_ms": 1e3 * statistics.median(tf), "torch_ms": nn_ms,
            "floor_vs_torch": (products + reorders) / nn_ms,
            "fused_vs_torch": statistics.median(a / b for a, b in zip(tf, tr))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="lstm,peephole,cifg,gru")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--calls", type=int, default=5, help="forwards under the profiler")
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"{'cell':9s} {'products ms':>12} {'reorders ms':>12} {'fused ms':>9} {'torch.nn ms':>12} "
          f"{'floor/nn':>9} {'fused/nn':>9} {'loop us':>8} {'kernel us':>10}")
    for cell in args.cells.split(","):
        r = measure(cell, args.size, args.seq_len, args.batch_size, args.calls, args.rounds)
        rows.append(r)
        print(f"{cell:9s} {r['products_ms']:>12.1f} {r['reorders_ms']:>12.1f} {r['fused_ms']:>9.1f} "
              f"{r['torch_ms']:>12.1f} {r['floor_vs_torch']:>9.3f} {r['fused_vs_torch']:>9.3f} {r['loop_us']:>8.1f} "
              f"{'-' if r['kernel_us'] is None else format(r['kernel_us'], '.1f'):>10}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bench.machine_info(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
