"""The torch autograd loop (``engine="autograd"``): the cell's ``step`` over the sequence, through
the one sequence loop the NumPy reference runs (``reference/sequence.py``), differentiated by
autograd. The slow twin every fused path is tested against, and the path double backward takes.

Under ``torch.autocast`` the matrix products run in the autocast dtype while the state keeps the
initial state's dtype (float32 ``c``), see ``ops.keep_dtypes``.
"""
from __future__ import annotations

import torch

from ..cells import Cell
from ..reference.sequence import sequence_forward
from .ops import TORCH_OPS as ops
from .ops import autocast_of, keep_dtypes


def autograd_layer(cell: Cell, params: dict, x, state, keep=None):
    """``(y (T, B, R), state_n)``: ``cell.step`` in a Python loop, differentiated by autograd."""
    cast = keep_dtypes if autocast_of(x) else None
    y, state_n, _, _ = sequence_forward(ops, cell, params, x, tuple(state), keep, save=False, cast=cast)
    return y, state_n


def twin_grads(cell, params, x, state0, keep, dy, dstate, tensors):
    """Vector-Jacobian product through the autograd loop, with a graph (for double backward):
    the gradients of ``tensors`` (``params``' values, ``x``, ``state0``) given ``dy``, ``dstate``."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in tensors]
        names = list(params)
        p = dict(zip(names, inputs[: len(names)]))
        y, state = autograd_layer(cell, p, inputs[len(names)], tuple(inputs[len(names) + 1 :]), keep)
        # an output without a graph (the sLSTM's stabiliser m, a constant of its steps) sends nothing back
        pairs = [(o, g) for o, g in zip((y, *state), (dy, *dstate)) if g is not None and o.requires_grad]
        return torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                                   create_graph=True, allow_unused=True)
