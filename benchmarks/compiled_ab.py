"""What the compiled elementwise kernels (torch_engine/compiled.py) pay: the fused engine with
them and without them (``compiled.ENABLED`` switched per call), ``torch.nn``'s module and the
fused engine's products alone (``products``, its floor), timed interleaved round by round; every
ratio is the median of per-round ratios. ``--variants`` picks among those and three more:
``generic`` (the generic fused loop: ``capability.ENABLED`` off, what runs a cell without a
specialised loop), ``peer`` (experiments/peers.py: minGRU-pytorch for mingru/minlstm) and
``chained`` (the products alone with each per-step product reading what the thread has just
written from the product before it: ``experiments/floor.py``'s ``chained``).
``mkl_many`` is the fused engine with the compiled kernels but its products of all steps at once
on MKL (``products.ONEDNN_MANY`` off; what ran before they moved to oneDNN on AVX-512);
``add_in_product`` the LSTM family's compiled step with the input pre-activation added by the
product, not by the kernel (``loops.lstm.ADD_IN_KERNEL`` off); ``per_step`` the LSTM family's forward
one kernel call a step, not all steps in one (``loops.lstm.SEQUENCE`` off); ``mkl_wgrad`` the weight gradients
on MKL while the other products of all steps stay where they run (``products.WEIGHT_GRAD_ON_ONEDNN``
off), ``wgrad_all_onednn`` every weight gradient there however small
(``products.WEIGHT_GRAD_MIN`` and ``WEIGHT_GRAD_MIN_THREADED`` 0); ``no_hugepages`` the loops' big
buffers from ordinary allocations (``buffers.ENABLED`` off);
``rand_zoneout`` zoneout's masks from ``torch.rand`` (``regularisation.HASHED_ZONEOUT`` off);
``min_weight_262k`` per-step products on oneDNN from 512 x 512 weight elements, as on AVX2
(``products.ONEDNN_MIN_WEIGHT``); ``no_scratch`` a backward's temporaries allocated afresh each
call (``buffers.SCRATCH`` off), ``scratch_8m`` only those from 8 MiB kept (``buffers.SCRATCH_MIN_BYTES``,
as before 1 MiB); ``no_recycle`` a forward's saved buffers allocated afresh
(``buffers.RECYCLE`` off), ``fresh_buffers`` that and no huge pages either (the LSTM family's, the
GRU's and the Elman RNN's saved buffers as they were before they were recycled).
``--grains`` adds, for each number of elements given, the compiled kernels with that parallel grain
(``csrc/common.h``: the fewest elements a thread of a pass is given) as variant ``gN``.

    python benchmarks/compiled_ab.py --cells lstm,peephole,cifg,gru --sizes 512 --threads 1 --json out.json
    python benchmarks/compiled_ab.py --cells mingru,minlstm --sizes 512 --seq-len 1024 --kinds train \
        --variants compiled,eager,products,peer --threads 1 --repeats 3
    python benchmarks/compiled_ab.py --cells mogrifier --variants products --grains 16384,4096 --threads 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch

from gatedrnn.experiments import bench, floor
from gatedrnn.torch_engine import buffers, capability, compiled, products, regularisation
from gatedrnn.torch_engine.loops import lstm as lstm_loop

#: each variant that is the fused engine with some of its switches changed: (module, attribute,
#: value) for each; every switch a variant does not name keeps the value it had when measuring began
SWITCHED = {
    "eager": [(compiled, "ENABLED", False)],
    "generic": [(capability, "ENABLED", False)],
    "mkl_many": [(products, "ONEDNN_MANY", False)],
    "add_in_product": [(lstm_loop, "ADD_IN_KERNEL", False)],
    "per_step": [(lstm_loop, "SEQUENCE", False)],
    "mkl_wgrad": [(products, "WEIGHT_GRAD_ON_ONEDNN", False)],
    "wgrad_all_onednn": [(products, "WEIGHT_GRAD_MIN", 0), (products, "WEIGHT_GRAD_MIN_THREADED", 0)],
    "no_hugepages": [(buffers, "ENABLED", False)],
    "rand_zoneout": [(regularisation, "HASHED_ZONEOUT", False)],
    "min_weight_262k": [(products, "ONEDNN_MIN_WEIGHT", 512 * 512)],
    "no_scratch": [(buffers, "SCRATCH", False)],
    "scratch_8m": [(buffers, "SCRATCH_MIN_BYTES", 8 << 20)],
    "no_recycle": [(buffers, "RECYCLE", False)],
    "fresh_buffers": [(buffers, "RECYCLE", False), (buffers, "ENABLED", False)],
}
VARIANTS = ("compiled", "eager", "torch", "products", "generic", "peer", "chained", *[v for v in SWITCHED if v not in
                                                                       ("eager", "generic")])


def measure(cell: str, size: int, kind: str, cfg, repeats: int, variants=VARIANTS[:4], grains=()) -> dict:
    kernels = compiled.pointwise()
    default_grain = kernels.set_parallel_grain(1)  # csrc/common.h's own value, put back at once
    kernels.set_parallel_grain(default_grain)
    torch.manual_seed(0)
    fused = bench.make_module("fused", cell, size, cfg)
    x, gy = bench._inputs(cfg, size)
    defaults = {(m, a): getattr(m, a) for switches in SWITCHED.values() for m, a, _ in switches}

    def run(module, switches=(), grain=None):
        def fn():
            for (m, a), value in defaults.items():
                setattr(m, a, value)
            for m, a, value in switches:
                setattr(m, a, value)
            kernels.set_parallel_grain(grain or default_grain)
            if kind == "train":
                module.zero_grad(set_to_none=True)
                x.grad = None
                module(x)[0].backward(gy)
            else:
                with torch.no_grad():
                    module(x)
        return fn

    makers = {"compiled": lambda: run(fused), "torch": lambda: run(bench.make_module("torch", cell, size, cfg)),
              "products": lambda: floor.products_only(fused, x.detach(), kind == "train"),
              "chained": lambda: floor.products_only(fused, x.detach(), kind == "train", chained=True),
              "peer": lambda: run(bench.make_module("peer", cell, size, cfg)),
              **{v: (lambda sw=sw: run(fused, sw)) for v, sw in SWITCHED.items()}}
    fns = {v: makers[v]() for v in variants}
    fns.update({f"g{g}": run(fused, grain=g) for g in grains})
    try:
        times = bench.interleaved(fns, repeats)
    finally:
        for (m, a), value in defaults.items():
            setattr(m, a, value)
        kernels.set_parallel_grain(default_grain)
    ratio = lambda a, b: statistics.median(u / v for u, v in zip(times[a], times[b]))  # noqa: E731
    row = {"cell": cell, "size": size, "kind": kind, "threads": torch.get_num_threads(), "seq_len": cfg.seq_len,
           "batch_size": cfg.batch_size, "options": cfg.module_options,
           **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}}
    pairs = [("compiled", "torch"), ("eager", "torch"), ("compiled", "eager"), ("compiled", "products"),
             ("chained", "products"),
             ("eager", "products"), ("products", "torch"), ("compiled", "generic"), ("eager", "generic"),
             ("peer", "compiled"), ("peer", "eager"), ("peer", "products")]
    pairs += [pair for v in VARIANTS[6:] for pair in (("compiled", v), (v, "torch"))]
    for a, b in pairs:
        if a in times and b in times:
            row[f"{a}_vs_{b}"] = ratio(a, b)
    for g in grains:
        for b in ("products", "torch", f"g{grains[0]}"):
            if b in times and b != f"g{g}":
                row[f"g{g}_vs_{b}"] = ratio(f"g{g}", b)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", default="lstm,peephole,cifg,gru")
    p.add_argument("--sizes", default="512")
    p.add_argument("--kinds", default="train,forward")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--variants", default="compiled,eager,torch,products",
                   help=f"comma-separated, some of {','.join(VARIANTS)}")
    p.add_argument("--grains", default="", help="comma-separated element counts: the compiled kernels with "
                   "each as their parallel grain (variants gN)")
    p.add_argument("--option", action="append", default=[], help="KEY=VALUE for the gatedrnn modules (zoneout=0.1)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if compiled.pointwise() is None:
        print("the compiled kernels are off or cannot be built here", file=sys.stderr)
        return 1
    opts = {}
    for kv in args.option:
        k, v = kv.split("=", 1)
        opts[k] = float(v) if v.replace(".", "", 1).isdigit() else v.lower() == "true"
    variants = tuple(args.variants.split(","))
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {bad}: expected some of {', '.join(VARIANTS)}")
    grains = tuple(int(g) for g in args.grains.split(",") if g)
    cfg = bench.BenchConfig(module_options=opts, seq_len=args.seq_len, batch_size=args.batch_size)
    rows = []
    for cell in args.cells.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for kind in args.kinds.split(","):
                row = measure(cell, size, kind, cfg, args.repeats, variants, grains)
                rows.append(row)
                print(f"{kind:7s} {cell:9s} {size:5d} t{row['threads']} " + " ".join(
                    f"{k}={row[k]:.3f}" for k in row if "_vs_" in k), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bench.machine_info(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
