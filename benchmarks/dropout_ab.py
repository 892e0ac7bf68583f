"""What the language model's dropout costs in a training step: the default character model
(``LMConfig``: embedding 128, one LSTM) with dropout computed by the hash kernel (``hash``,
torch_engine/regularisation.py's ``dropout`` and csrc/dropout.cpp), by torch's own dropout
(``torch``: the path where the kernels do not run), and without dropout (``none``). A step is the
forward, the cross-entropy, the backward and an AdamW update on sequences of T=64 and B=32 over a
vocabulary of 200. Timed interleaved round by round; ratios are medians of per-round ratios.

    python benchmarks/dropout_ab.py --sizes 384,512 --threads 1,2 --p 0.2 --repeats 15 --json out.json
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from gatedrnn.experiments import bench
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.torch_engine import compiled
from grid import run_grid  # benchmarks/grid.py

V, T, B = 200, 64, 32


def measure(size: int, threads: int, p: float, repeats: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=V, hidden_size=size)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randint(0, V, (T, B)), torch.randint(0, V, (T, B))

    def step(rate, kernels):
        def fn():
            compiled.ENABLED = kernels
            model.set_dropout(rate)
            logits, _ = model(x)
            loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return fn

    try:
        times = bench.interleaved({"hash": step(p, True), "torch": step(p, False), "none": step(0.0, True)}, repeats)
    finally:
        compiled.ENABLED = True
    ratio = lambda a, b: statistics.median(u / v for u, v in zip(times[a], times[b]))  # noqa: E731
    return {"size": size, "threads": threads, "p": p, "repeats": repeats,
            "hash/none": ratio("hash", "none"), "torch/none": ratio("torch", "none"),
            "hash/torch": ratio("hash", "torch"), "none_ms": 1e3 * statistics.median(times["none"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="384,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--p", type=float, default=0.2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if compiled.pointwise() is None:
        raise SystemExit("dropout_ab.py: the compiled kernels are off or cannot be built here; nothing to compare")
    run_grid(lambda size, threads: measure(size, threads, args.p, args.repeats), args.sizes, args.threads,
             lambda row: f"H={row['size']} threads={row['threads']} p={args.p}: hash/none {row['hash/none']:.3f}  "
                         f"torch/none {row['torch/none']:.3f}  hash/torch {row['hash/torch']:.3f}  (none: "
                         f"{row['none_ms']:.0f} ms)",
             args.json)


if __name__ == "__main__":
    main()
