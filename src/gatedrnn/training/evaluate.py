"""Evaluation of a language model over a whole token stream, the state carried throughout."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batching import eval_streams


@torch.no_grad()
def evaluate(model, tokens: np.ndarray, seq_len: int = 256, streams: int = 1, device=None) -> dict:
    """Mean loss of ``model`` over every predicted token of ``tokens`` (a 1-D array of ids).

    The state is carried from call to call, ``seq_len`` tokens per call, on ``device`` (the
    model's by default); the model is put in eval mode for the call and restored after.

    ``streams = 1`` reads the split as one stream, the exact figure; ``streams = S`` cuts it into
    ``S`` contiguous streams run side by side (faster: ``S - 1`` restarts of the state, and a tail
    shorter than ``S`` tokens left out). Returns loss (nats/token), ppl, bits_per_token, tokens.
    """
    if streams <= 0 or seq_len <= 0:
        raise ValueError(f"streams and seq_len must be positive, got {streams} and {seq_len}")
    n = len(tokens)
    streams = max(1, min(streams, n // 2))
    if n < 2:
        raise ValueError(f"cannot evaluate {n} token(s): expected at least 2")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = torch.from_numpy(eval_streams(tokens, streams).astype(np.int64)).t().contiguous().to(device)  # (N, S)
    total, count, state = 0.0, 0, None
    try:
        for start in range(0, rows.shape[0] - 1, seq_len):
            x = rows[start : start + seq_len]  # (T, S)
            y = rows[start + 1 : start + seq_len + 1]  # (T, S)
            x = x[: y.shape[0]]
            logits, state = model(x, state)  # (T, S, V)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    finally:
        model.train(was_training)
    return metrics(total / count, count)


def metrics(loss: float, tokens: int = 0) -> dict:
    # past exp(709) a float overflows: the perplexity is infinite (or NaN with the loss), not a
    # large finite number that reads like a measurement
    ppl = math.exp(loss) if loss < 700.0 else (math.inf if loss >= 700.0 else math.nan)
    return {"loss": loss, "ppl": ppl, "bits_per_token": loss / math.log(2), "tokens": tokens}
