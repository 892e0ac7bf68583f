"""The generic fused loop: every cell, every option, on the cell's own ``step``/``step_backward``.

Its forward is the one sequence loop (``reference/sequence.py``) run without a graph, keeping each
step's cache; its backward is the same file's BPTT, the cell's hand-derived ``step_backward`` in
reverse. Run through ``function.LoopFunction`` like the specialised loops (``loops/``), which
take over the configurations they declare (``capability.py``).

Under ``torch.autocast`` the products run in the autocast dtype while the state keeps the
initial state's dtype; the backward runs under the forward's autocast and sums the weight
gradients of the steps in float32.
"""
from __future__ import annotations

import torch

from ..reference.sequence import sequence_backward, sequence_forward
from .ops import TORCH_OPS as ops
from .ops import autocast_of, keep_dtypes


class GenericLoop:
    name = "generic"

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        cast = keep_dtypes if autocast_of(x) else None
        y, state_n, caches, in_cache = sequence_forward(ops, cell, p, x, state, keep, save=save, cast=cast)
        return y, state_n, ((caches, in_cache) if save else None)

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        caches, in_cache = saved
        dstate = tuple(torch.zeros_like(s) if d is None else d for s, d in zip(state, dstate))
        if dy is None:
            dy = x.new_zeros((x.shape[0], x.shape[1], state[0].shape[-1]))
        grads: dict = {}
        if autocast_of(x):  # the per-step weight gradients come out of half-precision products: sum them in float32
            grads = {n: torch.zeros_like(v, dtype=torch.promote_types(v.dtype, torch.float32))
                     for n, v in p.items() if not n.startswith("mask_")}
        grads["x"], dstate = sequence_backward(ops, cell, p, caches, in_cache, x, dy, dstate, keep, grads)
        return grads, dstate


GENERIC = GenericLoop()
