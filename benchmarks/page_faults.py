"""Minor page faults and system time of a training step's forward and backward, apart: the fused
engine's module and ``torch.nn``'s (where it computes the configuration), per cell and option, after
``--warmup`` steps, the median of ``--steps`` steps (``resource.getrusage``, the process's own counts).
What a step's fresh memory costs where the allocator gives freed memory back to the system.
With ``--vocab V`` the step is a language model's around the layer (an embedding of ``V`` words,
the layer, a linear decoder, cross-entropy, an SGD update): the forward's count is the layer's
alone, the backward's that of the whole backward and update, so what the allocator does with the
other layers' memory, as in training, acts on the layer's.

    python benchmarks/page_faults.py --threads 1 --json out.json
    python benchmarks/page_faults.py --threads 1 --vocab 100 --apart
    GATEDRNN_RECYCLE=0 python benchmarks/page_faults.py --threads 1 --vocab 100 --apart  # saved buffers afresh

What the allocator gives back depends on what the process did before, so ``--apart`` measures each
row in a process of its own, as a training run has one model; without it the rows share one.
    GATEDRNN_SCRATCH=0 python benchmarks/page_faults.py --threads 1   # the backward's temporaries afresh
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from gatedrnn.experiments import bench

CONFIGS = (("lstm", {}), ("peephole", {}), ("lstm", {"layer_norm": True}), ("lstm", {"zoneout": 0.1}), ("gru", {}))


def measure(cell: str, options: dict, engine: str, size: int, warmup: int, steps: int, vocab: int = 0) -> dict:
    cfg = bench.BenchConfig(module_options=options)
    module = bench.make_module(engine, cell, size, cfg)
    x, gy = bench._inputs(cfg, size)
    if vocab:
        T, B = x.shape[:2]
        embed, decode = torch.nn.Embedding(vocab, size), torch.nn.Linear(size, vocab)
        params = [*embed.parameters(), *module.parameters(), *decode.parameters()]
        update = torch.optim.SGD(params, lr=0.01)
        words, targets = torch.randint(0, vocab, (T, B)), torch.randint(0, vocab, (T * B,))
    rows = []
    for i in range(warmup + steps):
        module.zero_grad(set_to_none=True)
        x.grad = None
        if vocab:
            update.zero_grad(set_to_none=True)
            x = embed(words)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        y = module(x)[0]
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if vocab:
            torch.nn.functional.cross_entropy(decode(y).view(-1, vocab), targets).backward()
            update.step()
        else:
            y.backward(gy)
        r2, t2 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if i >= warmup:
            rows.append((r1.ru_minflt - r0.ru_minflt, r2.ru_minflt - r1.ru_minflt, 1e3 * (r2.ru_stime - r0.ru_stime),
                         1e3 * (t2 - t0)))
    med = [statistics.median(v) for v in zip(*rows)]
    return {"cell": cell, "options": options, "engine": engine, "size": size, "vocab": vocab,
            "forward_faults": med[0], "backward_faults": med[1], "system_ms": med[2], "step_ms": med[3]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--vocab", type=int, default=0, help="a language model's step of this many words around the layer")
    p.add_argument("--apart", action="store_true", help="each row in a process of its own")
    p.add_argument("--row", type=int, default=None, help=argparse.SUPPRESS)  # --apart's child: measure this row alone
    args = bench.script_args(p, argv)
    todo = [(cell, options, engine) for cell, options in CONFIGS for engine in ("fused", "torch")
            if not (engine == "torch" and (options or cell == "peephole"))]  # torch.nn does not compute it
    if args.row is not None:
        print(json.dumps(measure(*todo[args.row], args.size, args.warmup, args.steps, args.vocab)))
        return 0
    rows = []
    print(f"{'cell':9} {'options':22} {'engine':6} {'fwd faults':>10} {'bwd faults':>10} {'sys ms':>7} {'step ms':>8}")
    for k, (cell, options, engine) in enumerate(todo):
        if args.apart:
            child = [sys.executable, __file__, "--row", str(k), "--size", str(args.size), "--warmup", str(args.warmup),
                     "--steps", str(args.steps), "--vocab", str(args.vocab), "--threads", str(torch.get_num_threads())]
            r = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        else:
            r = measure(cell, options, engine, args.size, args.warmup, args.steps, args.vocab)
        rows.append(r)
        print(f"{cell:9} {str(options):22} {engine:6} {r['forward_faults']:>10.0f} {r['backward_faults']:>10.0f} "
              f"{r['system_ms']:>7.1f} {r['step_ms']:>8.1f}", flush=True)
    if args.json:
        bench.write_rows(args.json, rows, threads=torch.get_num_threads(), vocab=args.vocab, apart=args.apart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
