"""What AdamW's weight decay costs in a training step of the default character model (``LMConfig``:
embedding 128, one LSTM, dropout 0.1; T=64, B=32, a vocabulary of 150): the forward (under bf16
autocast with ``--bf16``, as ``gatedrnn train`` runs it on a processor with bf16 arithmetic), the
float32 cross-entropy, the backward, the gradient clip and an AdamW update with ``weight_decay``
``--decay`` (``decay``) or 0 (``none``), each arm its own optimizer over the same model. Timed
interleaved round by round; ratios are medians of per-round ratios.

    python benchmarks/weight_decay_ab.py --sizes 384,512 --threads 1,2 --repeats 11 [--bf16] --json out.json
"""
from __future__ import annotations

import argparse
import statistics

import torch

from gatedrnn.experiments import bench
from gatedrnn.models.lm import LanguageModel, LMConfig
from grid import lm_train_step, run_grid  # benchmarks/grid.py

V, T, B = 150, 64, 32


def measure(size: int, threads: int, decay: float, bf16: bool, repeats: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=V, hidden_size=size, dropout=0.1)).train()
    x, y = torch.randint(0, V, (T, B)), torch.randint(0, V, (T, B))

    def step(weight_decay):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=weight_decay)
        return lambda: lm_train_step(model, opt, x, y, bf16)

    times = bench.interleaved({"decay": step(decay), "none": step(0.0)}, repeats)
    return {"size": size, "threads": threads, "decay": decay, "bf16": bf16, "repeats": repeats,
            "decay/none": statistics.median(u / v for u, v in zip(times["decay"], times["none"])),
            "none_ms": 1e3 * statistics.median(times["none"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="384,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--decay", type=float, default=0.1)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    run_grid(lambda size, threads: measure(size, threads, args.decay, args.bf16, args.repeats), args.sizes,
             args.threads, lambda row: f"H={row['size']} threads={row['threads']} bf16={row['bf16']}: decay/none "
                                       f"{row['decay/none']:.3f} (none: {row['none_ms']:.0f} ms)", args.json)


if __name__ == "__main__":
    main()
