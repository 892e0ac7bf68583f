"""Where a generated token's time goes (2 layers, batch 1, no gradients), timed interleaved round by
round, every figure the median per token:

- ``compiled``: the module's ``step()`` with the compiled step (``generation.stack_step``);
- ``eager``: the same module's ``step()`` with the compiled kernels off (the path before them);
- ``call``: the compiled step called directly, without ``step()``'s Python around it;
- ``cells``: two ``torch.nn`` cells (``LSTMCell``, ``GRUCell``, ``RNNCell``) as ``gatedrnn bench`` steps them;
- ``vf``: the same two cells' kernels (``torch._VF.lstm_cell``, ...) without the module call;
- ``mv``: one bare matrix-vector product (``torch.mv``) over each of the model's weight matrices
  (``W_ih``, ``W_hh``, the Mogrifier's ``Q`` and ``R``: what any implementation must read once a
  token), the weight-bytes floor on torch's kernels.

    python benchmarks/generation_floor.py --cells lstm,gru --sizes 256,1024 --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch import _VF

from gatedrnn.experiments import bench
from gatedrnn.torch_engine import compiled, generation

TOKENS = 32
VF = {"LSTMCell": _VF.lstm_cell, "GRUCell": _VF.gru_cell, "RNNCell": _VF.rnn_tanh_cell}


def measure(cell: str, size: int, repeats: int) -> dict:
    cfg = bench.BenchConfig(cells=(cell,), sizes=(size,))
    torch.manual_seed(0)
    model = bench.make_module("fused", cell, size, cfg, num_layers=2)
    kind = bench.STEP_CELL[bench.YARDSTICK[cell]]
    cells = [getattr(torch.nn, kind)(size, size) for _ in range(2)]
    tokens = torch.randn(TOKENS, 1, size, generator=torch.Generator().manual_seed(0))
    matrices = [p.detach().reshape(-1, p.shape[-1]) for p in model.parameters() if p.dim() >= 2]
    vectors = [torch.randn(m.shape[1]) for m in matrices]

    def step(use_kernels):
        def fn():
            compiled.ENABLED = use_kernels
            state = None
            for t in range(TOKENS):
                _, state = model.step(tokens[t], state)
        return fn

    def call():
        compiled.ENABLED = True
        kernels = compiled.pointwise()
        args, layers, parts = generation._plan(model)
        state = [torch.zeros(2, 1, size)] * parts
        for t in range(TOKENS):
            out = kernels.stack_step(*args, tokens[t], state, layers)
            state = out[1:]

    def torch_cells(fn_of):
        def fn():
            states = [None, None]
            for t in range(TOKENS):
                inp = tokens[t]
                for k, c in enumerate(cells):
                    states[k] = fn_of(c)(inp, states[k])
                    inp = states[k][0] if isinstance(states[k], tuple) else states[k]
        return fn

    def vf(c):
        w = (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)

        def run(inp, state):
            if state is None:
                zero = inp.new_zeros(1, size)
                state = (zero, zero) if kind == "LSTMCell" else zero
            return VF[kind](inp, state, *w)
        return run

    def mv():
        for _ in range(TOKENS):
            for m, v in zip(matrices, vectors):
                torch.mv(m, v)

    fns = {"compiled": step(True), "eager": step(False), "call": call, "cells": torch_cells(lambda c: c),
           "vf": torch_cells(vf), "mv": mv}
    with torch.no_grad():
        if compiled.pointwise() is None:
            raise SystemExit("the compiled kernels are off or cannot be built here")
        try:
            times = bench.interleaved(fns, repeats)
        finally:
            compiled.ENABLED = True
    row = {"cell": cell, "size": size, "threads": torch.get_num_threads()}
    for name, ts in times.items():
        row[f"{name}_ms"] = 1e3 * statistics.median(ts) / TOKENS
        row[f"{name}_vs_cells"] = statistics.median(a / b for a, b in zip(ts, times["cells"]))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--sizes", default="256,1024")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for cell in args.cells.split(","):
            row = measure(cell, size, args.repeats)
            rows.append(row)
            print(f"{cell:<10} H={size:<5} " + " ".join(
                f"{n}={row[n + '_ms']:.3f}ms({row[n + '_vs_cells']:.2f})"
                for n in ("compiled", "call", "eager", "cells", "vf", "mv")), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": bench.machine_info(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
