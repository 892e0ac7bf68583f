"""What the step benchmarks share: the loop of one measurement per thread count and hidden size,
each printed as it comes, all written as JSON at the end; and the language model's training step,
as ``gatedrnn train`` takes it."""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F


def run_grid(measure, sizes: str, threads: str, line, json_path=None, header=None) -> list:
    """``measure(size, threads) -> dict`` for every comma-separated thread count and size (thread
    counts outer); ``line(row)`` is printed for each; ``json_path`` gets the rows, under ``header``'s
    keys where given (``{**header, "rows": rows}``)."""
    rows = []
    for t in (int(v) for v in threads.split(",")):
        for size in (int(v) for v in sizes.split(",")):
            row = measure(size, t)
            rows.append(row)
            print(line(row), flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows if header is None else {**header, "rows": rows}, f, indent=1)
    return rows


def lm_train_step(model, opt, x, y, bf16: bool):
    """One training step of a ``LanguageModel`` on tokens ``x`` and targets ``y`` (``(T, B)``): the
    forward under bf16 autocast or not, the float32 cross-entropy, the backward, the gradient clip
    at 1 and ``opt``'s update."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits, _ = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
