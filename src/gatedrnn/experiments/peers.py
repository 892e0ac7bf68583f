"""Other projects' implementations of the modern cells, wrapped as ``gatedrnn bench`` measures a
module: ``module(x (T, B, I)) -> (y (T, B, H), None)``, the parameters its own.

- ``slstm``: ``xlstm``'s CPU path, the vanilla loop (``xlstm.blocks.slstm.src.vanilla.slstm_forward``,
  pointwise ``"slstm"``), on the weights of a gatedrnn sLSTM layer laid out as it takes them;
- ``mingru``, ``minlstm``: ``minGRU-pytorch``'s ``minGRU``/``minLSTM`` (log-space parallel scan,
  no bias; the input size must equal the hidden size, as in the benchmark).

Both packages are optional (the ``dev`` extra); a missing one raises ``RuntimeError``, which the
benchmark reports on the row.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class XLSTMVanilla(nn.Module):
    def __init__(self, input_size, hidden_size, num_heads=1, **factory):
        super().__init__()
        try:
            from xlstm.blocks.slstm.src import vanilla
        except ImportError as err:
            raise RuntimeError(f"the xlstm package is not installed ({err})") from err
        self.vanilla, self.K, self.H = vanilla, num_heads, hidden_size
        DH = hidden_size // num_heads
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **factory).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, DH, **factory).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size, **factory))

    def forward(self, x, hx=None):
        T, B, _ = x.shape
        K, H = self.K, self.H
        DH = H // K
        R = self.weight_hh.reshape(4, K, DH, DH).transpose(0, 1).reshape(K, 4 * DH, DH)
        wx = x @ self.weight_ih.t()
        states = x.new_zeros(4, B, H)
        states_all, _, _ = self.vanilla.slstm_forward(wx, states, R, self.bias,
                                                      self.vanilla.slstm_pointwise_function_registry["slstm"])
        return states_all[0, 1:], None


class MinRNNPeer(nn.Module):
    def __init__(self, cell, input_size, hidden_size, **factory):
        super().__init__()
        if input_size != hidden_size:
            raise RuntimeError(f"minGRU-pytorch maps a size onto itself; got {input_size} -> {hidden_size}")
        try:
            from minGRU_pytorch.minGRU import minGRU
            from minGRU_pytorch.minLSTM import minLSTM
        except ImportError as err:
            raise RuntimeError(f"the minGRU-pytorch package is not installed ({err})") from err
        self.inner = (minGRU if cell == "mingru" else minLSTM)(hidden_size).to(**factory)

    def forward(self, x, hx=None):
        return self.inner(x.transpose(0, 1)).transpose(0, 1), None


def make_peer(cell: str, size: int, options: dict, **factory) -> nn.Module:
    if cell == "slstm":
        return XLSTMVanilla(size, size, options.get("num_heads", 1), **factory)
    if cell in ("mingru", "minlstm"):
        return MinRNNPeer(cell, size, size, **factory)
    raise ValueError(f"no peer implementation of {cell!r} to measure")


PEER_CELLS = ("slstm", "mingru", "minlstm")
