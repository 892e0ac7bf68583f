"""How a step's product should add a ``(rows, N)`` tensor (the step's input pre-activation, or a
gradient summed into): oneDNN's binary post-op (``_linear_pointwise.binary``, the addition inside
the product's kernel) or the plain packed product followed by an in-place ``add_``. Per weight
shape ``(N, K)``, timed on the same operands interleaved round by round against the plain product
without any addition; each ratio is the median of per-round ratios. As in a sequence's loop, each
call adds another step's rows (``--steps`` slices of one ``(steps, rows, N)`` tensor, taken in turn),
so what is added comes from memory, not from the cache the last call left. The weight is packed
once (as ``products.Product`` packs it per layer call), outside the timing.

    python benchmarks/product_add.py --threads 1 --json out.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from gatedrnn.experiments.bench import script_args, write_rows

SHAPES = ((1024, 256), (256, 256), (2048, 512), (512, 2048), (512, 512), (4096, 1024), (1024, 4096), (1024, 1024))


def measure(n: int, k: int, rows: int, rounds: int, steps: int) -> dict:
    mkldnn = torch.ops.mkldnn
    w, x, adds = torch.randn(n, k), torch.randn(rows, k), torch.randn(steps, rows, n)
    packed = mkldnn._reorder_linear_weight(w, rows)
    one = {"plain": lambda t: mkldnn._linear_pointwise(x, packed, None, "none", [], ""),
           "binary": lambda t: mkldnn._linear_pointwise.binary(x, adds[t], packed, None, "add"),
           "then_add": lambda t: mkldnn._linear_pointwise(x, packed, None, "none", [], "").add_(adds[t])}
    torch.testing.assert_close(one["binary"](0), one["then_add"](0), rtol=1e-4, atol=1e-4)
    times = {name: [] for name in one}
    for r in range(rounds):
        for name in (list(one) if r % 2 == 0 else list(one)[::-1]):
            fn = one[name]
            start = time.perf_counter()
            for t in range(steps):
                fn(t)
            times[name].append((time.perf_counter() - start) / steps)
    out = {"n": n, "k": k, "rows": rows, **{f"{name}_us": 1e6 * statistics.median(t) for name, t in times.items()}}
    for name in ("binary", "then_add"):
        out[f"{name}_vs_plain"] = statistics.median(a / b for a, b in zip(times[name], times["plain"]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=32, help="rows of x: the batch (default 32)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=64, help="products per round and variant, each adding its own rows")
    args = script_args(p, argv)
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        print("oneDNN's packed product is not available in this torch", file=sys.stderr)
        return 1
    rows = []
    print(f"{'N':>5} {'K':>5} {'plain us':>9} {'binary/plain':>13} {'then_add/plain':>15}")
    for n, k in SHAPES:
        r = measure(n, k, args.rows, args.rounds, args.steps)
        rows.append(r)
        print(f"{n:>5} {k:>5} {r['plain_us']:>9.1f} {r['binary_vs_plain']:>13.3f} {r['then_add_vs_plain']:>15.3f}",
              flush=True)
    if args.json:
        write_rows(args.json, rows, threads=torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
