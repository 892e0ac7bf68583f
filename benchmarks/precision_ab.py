"""What bf16 autocast pays in a training step of the default character model (``LMConfig``:
embedding 128, one LSTM, dropout 0.1), the step ``gatedrnn train`` takes: the forward under
``torch.autocast("cpu", torch.bfloat16)`` or not, the cross-entropy in float32, the backward, the
gradient clip and an AdamW update, on sequences of T=64 and B=32 over a vocabulary of 150.
``bf16`` runs ``engine="auto"`` (torch's oneDNN kernels where ``native_bf16()`` says the processor
computes bf16 itself, the fused engine's autocast loop elsewhere); ``float32`` the same model
without autocast. Timed interleaved round by round; ratios are medians of per-round ratios.

    python benchmarks/precision_ab.py --sizes 384,512 --threads 1,2 --repeats 11 --json out.json
"""
from __future__ import annotations

import argparse
import statistics

import torch

from gatedrnn.experiments import bench
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.torch_engine.native import native_bf16
from grid import lm_train_step, run_grid  # benchmarks/grid.py

V, T, B = 150, 64, 32


def measure(size: int, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=V, hidden_size=size, dropout=0.1)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randint(0, V, (T, B)), torch.randint(0, V, (T, B))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        engine = model.rnn.resolve_engine(torch.empty(0))

    times = bench.interleaved({"bf16": lambda: lm_train_step(model, opt, x, y, True),
                               "float32": lambda: lm_train_step(model, opt, x, y, False)}, repeats)
    ratio = statistics.median(u / v for u, v in zip(times["bf16"], times["float32"]))
    return {"size": size, "threads": threads, "repeats": repeats, "bf16_engine": engine, "bf16/float32": ratio,
            "float32_ms": 1e3 * statistics.median(times["float32"]), "bf16_ms": 1e3 * statistics.median(times["bf16"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="384,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"native_bf16: {native_bf16()}", flush=True)
    run_grid(lambda size, threads: measure(size, threads, args.repeats), args.sizes, args.threads,
             lambda row: f"H={row['size']} threads={row['threads']}: bf16/float32 {row['bf16/float32']:.3f} (bf16 on "
                         f"the {row['bf16_engine']} engine; float32 {row['float32_ms']:.0f} ms, bf16 "
                         f"{row['bf16_ms']:.0f} ms)",
             args.json, header={"native_bf16": native_bf16()})


if __name__ == "__main__":
    main()
