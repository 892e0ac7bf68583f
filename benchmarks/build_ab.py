"""The compiled kernels of another commit against this tree's, interleaved in one process.

    python benchmarks/build_ab.py --commit 07b4b51 --cells lstm,gru,mogrifier --sizes 256,512 --threads 2

The other commit's ``csrc/`` is taken with ``git archive`` and built (or loaded from torch's
extension folder, where an earlier build of the same sources lies) under its own name, as
``compiled.py`` names a build; each round then times a training step of the same fused module with
``old`` (that commit's kernels) and ``new`` (this tree's) in turn. Printed: the median of per-round
ratios ``new / old``; the rows also go to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from gatedrnn.experiments import bench
from gatedrnn.torch_engine import compiled

ROOT = Path(__file__).resolve().parent.parent
CSRC = "src/gatedrnn/torch_engine/csrc"


def kernels_of(commit: str):
    """The compiled module built from ``commit``'s ``csrc/``."""
    folder = Path(tempfile.mkdtemp(prefix="gatedrnn-csrc-"))
    archive = subprocess.run(["git", "archive", commit, CSRC], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    here, here_sources = compiled.CSRC, compiled.SOURCES
    compiled.CSRC = folder / CSRC
    compiled.SOURCES = sorted(compiled.CSRC.glob("*.cpp"))
    try:
        return compiled._load()
    finally:
        compiled.CSRC, compiled.SOURCES = here, here_sources


def measure(cell: str, size: int, cfg, repeats: int, old, new) -> dict:
    torch.manual_seed(0)
    module = bench.make_module("fused", cell, size, cfg)
    x, gy = bench._inputs(cfg, size)

    def step(kernels):
        def fn():
            compiled._state["module"] = kernels
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x)[0].backward(gy)
        return fn

    try:
        times = bench.interleaved({"old": step(old), "new": step(new)}, repeats)
    finally:
        compiled._state["module"] = new
    return {"cell": cell, "size": size, "threads": torch.get_num_threads(), "seq_len": cfg.seq_len,
            "batch_size": cfg.batch_size, "old_s": times["old"], "new_s": times["new"],
            "new_vs_old": statistics.median(n / o for n, o in zip(times["new"], times["old"]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commit", required=True, help="the commit whose kernels are the 'old' ones")
    p.add_argument("--cells", default="lstm,gru,mogrifier")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    new, old = compiled.pointwise(), kernels_of(args.commit)
    if new is None or old is None:
        print("the compiled kernels are off or cannot be built here", file=sys.stderr)
        return 1
    cfg = bench.BenchConfig()
    rows = []
    for cell in args.cells.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(cell, size, cfg, args.repeats, old, new))
            print(f"{cell:9s} {size:5d} t{rows[-1]['threads']} new_vs_old={rows[-1]['new_vs_old']:.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
