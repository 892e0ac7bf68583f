"""Contiguous streams for stateful truncated BPTT.

The token sequence is cut into ``B`` equal streams laid side by side (the ``batchify`` of the
PyTorch word-language-model example). Batch ``n`` is the ``n``-th window of ``T`` tokens of every
stream, so row ``b`` of one batch continues row ``b`` of the previous one and the recurrent state
can be carried across. The position is two integers (``epoch``, ``pos``), saved in checkpoints.
"""
from __future__ import annotations

import numpy as np
import torch


class StreamBatcher:
    """Windows ``(x, y)`` of shape ``(T, B)`` over ``B`` contiguous streams of ``tokens``.

    ``rows`` selects this process's share of the ``B`` streams (data parallel training).
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, rows: slice | None = None,
                 split: str = "train"):
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        n = len(tokens)
        stream_len = n // batch_size
        if stream_len < seq_len + 1:
            raise ValueError(
                f"the {split} split is too small for one batch: it has {n:,} tokens, and batch size "
                f"{batch_size} x (seq len {seq_len} + 1) needs {batch_size * (seq_len + 1):,}")
        self.batch_size, self.seq_len, self.stream_len = batch_size, seq_len, stream_len
        self.streams = np.ascontiguousarray(tokens[: batch_size * stream_len].reshape(batch_size, stream_len))
        if rows is not None:
            self.streams = self.streams[rows]
        self.epoch, self.pos = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return (self.stream_len - 1) // self.seq_len

    def state_dict(self) -> dict:
        """The read position, as plain types: ``load_state_dict`` resumes from it."""
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, d: dict) -> None:
        """Resume at the position ``d`` (from ``state_dict``) saved."""
        epoch, pos = int(d["epoch"]), int(d["pos"])
        if not 0 <= pos <= self.stream_len - 1:
            raise ValueError(f"data position {pos} is outside the streams (length {self.stream_len})")
        self.epoch, self.pos = epoch, pos

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The next window ``(x, y, new_epoch)``; ``new_epoch`` says the carried state must reset."""
        new_epoch = False
        if self.pos + self.seq_len + 1 > self.stream_len:
            self.epoch, self.pos = self.epoch + 1, 0
            new_epoch = True
        window = self.streams[:, self.pos : self.pos + self.seq_len + 1].astype(np.int64)  # (B, T+1)
        self.pos += self.seq_len
        w = torch.from_numpy(window).t().contiguous()  # (T+1, B)
        return w[:-1], w[1:], new_epoch


def eval_streams(tokens: np.ndarray, streams: int):
    """``tokens`` cut into ``streams`` contiguous rows ``(S, N // S)``, the tail dropped."""
    n = len(tokens) // streams
    return np.ascontiguousarray(tokens[: streams * n].reshape(streams, n))
