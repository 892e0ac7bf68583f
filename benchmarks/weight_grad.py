"""The weight gradient of a product over all steps, ``d^T inp`` for ``d`` ``(rows, N)`` and
``inp`` ``(rows, K)``: MKL (``torch.mm`` on the transposed view, what the engine ran before) against
oneDNN as the engine runs it (``products.weight_grad`` with the products of all steps on oneDNN,
at every size: ``products.WEIGHT_GRAD_MIN`` and ``WEIGHT_GRAD_MIN_THREADED`` set to 0; ``d``
transposed into the source, ``inp`` reordered as the weight, both inside the timing, as the engine
pays them once per backward). Per shape ``(N, K)``, the two are timed on the same operands
interleaved round by round (who goes first alternates); the ratio is the median of per-round ratios.
A third and fourth take two weight gradients of one ``d`` (an LSTM's input and recurrent weights,
``I = H``): ``products.weight_grads`` transposing ``d`` once for both (``pair``) against two
``weight_grad`` calls (``two``), both on oneDNN; ``transpose`` is ``d``'s transposing copy alone
(ATen's), which the oneDNN path pays once per ``d``.

    python benchmarks/weight_grad.py --threads 1 --json out.json
    python benchmarks/weight_grad.py --threads 2 --rows 512 --shapes 256x256,512x256,768x256 --rounds 41
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from gatedrnn.experiments.bench import script_args, write_rows
from gatedrnn.torch_engine import products

#: (N, K): the LSTM's 4H x H at H = 256, 512, 1024, the GRU's 3H x H, the Elman RNN's H x H
SHAPES = ((1024, 256), (2048, 512), (4096, 1024), (768, 256), (1536, 512), (3072, 1024), (512, 512), (1024, 1024))


def measure(n: int, k: int, rows: int, rounds: int) -> dict:
    d, inp, inp2 = torch.randn(rows, n), torch.randn(rows, k), torch.randn(rows, k)
    one = {"mkl": lambda: torch.mm(d.t(), inp), "onednn": lambda: products.weight_grad(d, inp),
           "pair": lambda: products.weight_grads(d, [inp, inp2]),
           "two": lambda: (products.weight_grad(d, inp), products.weight_grad(d, inp2)),
           "transpose": lambda: d.t().contiguous()}
    torch.testing.assert_close(one["onednn"](), one["mkl"](), rtol=1e-4, atol=1e-3)
    times = {name: [] for name in one}
    for r in range(rounds):
        for name in (list(one) if r % 2 == 0 else list(one)[::-1]):
            start = time.perf_counter()
            one[name]()
            times[name].append(time.perf_counter() - start)
    return {"n": n, "k": k, "rows": rows, **{f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()},
            "onednn_vs_mkl": statistics.median(a / b for a, b in zip(times["onednn"], times["mkl"])),
            "pair_vs_two": statistics.median(a / b for a, b in zip(times["pair"], times["two"]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2048, help="rows of d and inp: T*B (default 2048, T=64, B=32)")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--shapes", default=None, help="comma-separated NxK (default: the cells' shapes, SHAPES)")
    args = script_args(p, argv)
    probe = torch.zeros(4, 4)
    products.ONEDNN_MANY = products.WEIGHT_GRAD_ON_ONEDNN = True  # on oneDNN here, whatever the processor
    products.WEIGHT_GRAD_MIN = products.WEIGHT_GRAD_MIN_THREADED = 0  # and whatever the size
    if not products._many_on_onednn(probe, probe, None):
        print("oneDNN's packed product is not available in this torch", file=sys.stderr)
        return 1
    rows = []
    print(f"{'N':>5} {'K':>5} {'mkl ms':>8} {'onednn/mkl':>11} {'pair/two':>9} {'transpose ms':>13}")
    shapes = SHAPES if not args.shapes else [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    for n, k in shapes:
        r = measure(n, k, args.rows, args.rounds)
        rows.append(r)
        print(f"{n:>5} {k:>5} {r['mkl_ms']:>8.2f} {r['onednn_vs_mkl']:>11.3f} {r['pair_vs_two']:>9.3f} {r['transpose_ms']:>13.2f}", flush=True)
    if args.json:
        write_rows(args.json, rows, threads=torch.get_num_threads())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
