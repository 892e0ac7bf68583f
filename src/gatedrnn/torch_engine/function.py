"""The one ``torch.autograd.Function`` of the fused engine, shared by every loop.

A loop (the generic one in ``generic.py``, a specialised one in ``loops/``) is an object with

    y, state_n, saved = loop.forward(cell, p, x, state, save, keep)        # saved: a pytree, or None
    grads, dstate_0 = loop.backward(cell, p, x, state, saved, dy, dstate, need_dx, keep)

where ``grads`` maps parameter names (and ``"x"``) to gradients, and ``dy``/``dstate`` entries may
be ``None`` (no gradient flows there). ``LoopFunction`` packs the tensors, saves the loop's
buffers through ``save_for_backward`` (so autograd frees them after the backward, unless the
graph is retained), unpacks them, runs the loop's backward under the forward's autocast, and,
when a graph of the backward is requested (double backward), differentiates through the autograd
twin instead, so second derivatives are exact and the first-order path keeps its speed; the
same when the backward runs under a ``torch.func`` transform (vmap over the gradients).
"""
from __future__ import annotations

import contextlib

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from .autograd_loop import twin_grads
from .ops import autocast_of, transforms_active

_SAVED = object()  # marks where a saved tensor goes back into the flattened buffers
_CONSTS = 4  # the Function's non-tensor arguments: loop, cell, names, keep


def _split(names, tensors):
    n = len(names)
    return dict(zip(names, tensors[:n])), tensors[n], tuple(tensors[n + 1 :])


class LoopFunction(torch.autograd.Function):
    """Forward: ``loop.forward`` without a graph, its buffers saved. Backward: its hand-derived
    BPTT. ``keep`` (zoneout, padding) is a tuple of constant masks."""

    @staticmethod
    def forward(ctx, loop, cell, names, keep, *tensors):
        params, x, state = _split(names, tensors)
        ctx.amp = autocast_of(x)
        y, state_n, saved = loop.forward(cell, params, x, state, save=True, keep=keep)
        ctx.loop, ctx.cell, ctx.names, ctx.keep, ctx.n_tensors = loop, cell, names, keep, len(tensors)
        leaves, ctx.saved_spec = tree_flatten(saved)
        ctx.saved_consts = [_SAVED if torch.is_tensor(a) else a for a in leaves]
        ctx.save_for_backward(*tensors, *(a for a in leaves if torch.is_tensor(a)))
        return (y, *state_n)

    @staticmethod
    def backward(ctx, dy, *dstate):
        # the backward's products in the forward's precision, as autocast runs built-in ops' backward
        amp = torch.autocast(ctx.amp[0], dtype=ctx.amp[1]) if ctx.amp else contextlib.nullcontext()
        with amp:
            return (None,) * _CONSTS + LoopFunction._grads(ctx, dy, dstate)

    @staticmethod
    def _grads(ctx, dy, dstate) -> tuple:
        saved = ctx.saved_tensors
        tensors = saved[: ctx.n_tensors]
        params, x, state0 = _split(ctx.names, tensors)
        if torch.is_grad_enabled() or transforms_active(dy, *dstate):
            # a graph of the backward is wanted, or the backward runs batched (vmap over
            # gradients, gradcheck's check_batched_grad): go through the twin
            return tuple(twin_grads(ctx.cell, params, x, state0, ctx.keep, dy, dstate, tensors))
        rest = iter(saved[ctx.n_tensors :])
        buffers = tree_unflatten([next(rest) if a is _SAVED else a for a in ctx.saved_consts], ctx.saved_spec)
        need = ctx.needs_input_grad[_CONSTS:]
        n = len(params)
        grads, dstate0 = ctx.loop.backward(ctx.cell, params, x, state0, buffers, dy, dstate, need[n], ctx.keep)
        dparams = []
        for (name, p), needed in zip(params.items(), need):
            g = grads.get(name) if needed else None
            dparams.append(None if not needed else torch.zeros_like(p) if g is None else g.to(p.dtype))
        dx = grads.get("x")
        dx = None if dx is None else dx.to(x.dtype)
        dstate0 = tuple(None if d is None else d.to(s.dtype) for d, s in zip(dstate0, state0))
        return (*dparams, dx, *dstate0)


def run_loop(loop, cell, params: dict, x, state, keep=None):
    """``(y (T, B, R), state_n)`` through ``loop``: as ``LoopFunction`` where a gradient is wanted,
    else the loop's forward alone, with one set of reused buffers instead of saved ones."""
    state = tuple(state)
    tensors = (*params.values(), x, *state)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out = LoopFunction.apply(loop, cell, tuple(params), keep, *tensors)
        return out[0], tuple(out[1:])
    with torch.no_grad():
        y, state_n, _ = loop.forward(cell, params, x, state, save=False, keep=keep)
    return y, tuple(state_n)
