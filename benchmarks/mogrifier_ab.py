"""The Mogrifier's loop (torch_engine/loops/mogrifier.py) against an earlier version of the same
file, and both against the products alone (``products``, the floor), timed interleaved round by
round in one process; every ratio is the median of per-round ratios. The earlier version is a
copy of the file, e.g. from git:

    git show e74e610:src/gatedrnn/torch_engine/loops/mogrifier.py > /tmp/mogrifier_before.py
    python benchmarks/mogrifier_ab.py --before /tmp/mogrifier_before.py --sizes 256,512,1024 --threads 1

Both versions run with the compiled kernels on (the earlier one calls only those it knew of).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time

import torch

from gatedrnn.experiments import bench, floor
from gatedrnn.torch_engine.loops import mogrifier


def load_before(path):
    """The earlier file as a module of the loops package (its relative imports resolve there)."""
    spec = importlib.util.spec_from_file_location("gatedrnn.torch_engine.loops._mogrifier_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MogrifierLoop


def measure(size, kind, before, repeats, cfg, clock="wall"):
    torch.manual_seed(0)
    module = bench.make_module("fused", "mogrifier", size, cfg)
    x, gy = bench._inputs(cfg, size)
    loop = mogrifier.MogrifierLoop
    now = (loop.forward, loop.backward)
    then = (before.forward, before.backward)

    def run(version):
        def fn():
            loop.forward, loop.backward = (staticmethod(version[0]), staticmethod(version[1]))
            if kind == "train":
                module(x)[0].backward(gy)
            else:
                with torch.no_grad():
                    module(x)
        return fn

    fns = {"after": run(now), "before": run(then), "products": floor.products_only(module, x.detach(), kind == "train")}
    try:
        times = bench.interleaved(fns, repeats, clock=time.process_time if clock == "cpu" else time.perf_counter)
    finally:
        loop.forward, loop.backward = staticmethod(now[0]), staticmethod(now[1])
    ratio = lambda a, b: statistics.median(u / v for u, v in zip(times[a], times[b]))  # noqa: E731
    row = {"cell": "mogrifier", "size": size, "kind": kind, "threads": torch.get_num_threads(), "clock": clock,
           **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}}
    for a, b in (("after", "products"), ("before", "products"), ("after", "before")):
        row[f"{a}_vs_{b}"] = ratio(a, b)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a copy of an earlier torch_engine/loops/mogrifier.py")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--kinds", default="train")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    before = load_before(args.before)
    cfg = bench.BenchConfig()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for kind in args.kinds.split(","):
            row = measure(size, kind, before, args.repeats, cfg, args.clock)
            rows.append(row)
            print(f"{kind:7s} mogrifier {size:5d} t{row['threads']} " + " ".join(
                f"{k}={row[k]:.3f}" for k in row if "_vs_" in k) + f" products_ms={row['products_ms']:.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bench.machine_info(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
