"""Which kernel should run a recurrent step's product ``x @ w.T``: oneDNN with its packed weight
(``products.Product``), MKL (``torch.mm``) or MKL with its packed weight (``torch.ops.mkl._mkl_linear``
on ``_mkl_reorder_linear_weight``, what ``torch.compile`` emits for a float32 linear on an MKL
build)? Per weight shape ``(N, K)``, all are timed on the same ``(rows, K)`` input, interleaved
round by round; each ratio is the median of per-round ratios.

    python benchmarks/product_kernels.py --threads 1 --rows 32 --json out.json

The packing (``_reorder_linear_weight``) happens once per layer call in the fused engine, not
per step, so it is left out here; ``--repeat`` products per round amortise the call overhead
the way one sequence's steps do. ``--reorder`` counts it in every oneDNN product: what the products
of all steps at once (``--rows 2048``, ``products.hoisted``) pay, once each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from gatedrnn.experiments.bench import machine_info
from gatedrnn.torch_engine import products

SHAPES = ((128, 128), (256, 256), (512, 256), (256, 512), (768, 256), (256, 768), (1024, 256), (256, 1024),
          (512, 512), (1536, 512), (512, 1536), (2048, 512), (512, 2048), (1024, 1024), (2048, 1024),
          (1024, 2048), (4096, 1024), (1024, 4096))


def measure(n: int, k: int, rows: int, rounds: int, repeat: int, reorder: bool = False) -> dict:
    w, x = torch.randn(n, k), torch.randn(rows, k)
    saved = products.ONEDNN_MIN_WEIGHT
    products.ONEDNN_MIN_WEIGHT = 0
    try:
        packed = products.Product(w, rows)
    finally:
        products.ONEDNN_MIN_WEIGHT = saved
    if packed.packed is None:
        return {"n": n, "k": k, "rows": rows, "error": "oneDNN's packed product is not available here"}
    wt = w.t()
    fns = {"onednn": lambda: packed(x), "mkl": lambda: torch.mm(x, wt)}
    if reorder:  # the engine's own product of all steps, on oneDNN (ONEDNN_MANY, set in main)
        fns["onednn"] = lambda: products.hoisted(x, w)
    try:
        mkl_w = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
        fns["mkl_packed"] = lambda: torch.ops.mkl._mkl_linear(x, mkl_w, w, None, rows)
    except (RuntimeError, AttributeError):  # a torch built without MKL
        pass
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            start = time.perf_counter()
            for _ in range(repeat):
                fns[name]()
            times[name].append((time.perf_counter() - start) / repeat)
    out = {"n": n, "k": k, "rows": rows}
    for name in fns:
        out[f"{name}_us"] = 1e6 * statistics.median(times[name])
    out["onednn_vs_mkl"] = statistics.median(a / b for a, b in zip(times["onednn"], times["mkl"]))
    if "mkl_packed" in fns:
        out["mkl_packed_vs_onednn"] = statistics.median(
            a / b for a, b in zip(times["mkl_packed"], times["onednn"]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=32, help="rows of x: the batch (default 32)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--repeat", type=int, default=200, help="products per round and kernel")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reorder", action="store_true", help="count oneDNN's weight reorder in each of its products")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reorder:
        products.ONEDNN_MANY = True  # hoisted on oneDNN here, whatever the processor
    rows = []
    print(f"{'N':>5} {'K':>5} {'N*K':>8} {'oneDNN us':>10} {'MKL us':>10} {'oneDNN/MKL':>11} "
          f"{'MKLpk us':>10} {'MKLpk/oneDNN':>13}")
    for n, k in SHAPES:
        r = measure(n, k, args.rows, args.rounds, args.repeat, args.reorder)
        rows.append(r)
        if "error" in r:
            print(f"{n:>5} {k:>5} {r['error']}", file=sys.stderr)
            continue
        pk = (f"{r['mkl_packed_us']:>10.1f} {r['mkl_packed_vs_onednn']:>13.2f}" if "mkl_packed_us" in r
              else f"{'-':>10} {'-':>13}")
        print(f"{n:>5} {k:>5} {n * k:>8} {r['onednn_us']:>10.1f} {r['mkl_us']:>10.1f} {r['onednn_vs_mkl']:>11.2f} {pk}",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_info(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
