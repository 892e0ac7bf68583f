"""The autograd Function around the Triton loops, and the entry that builds its plan.

    y, state_n = run(cell, params, x, state, keep)   # params may hold mask_hh (state dropout)

Forward: the family's loop (through a CUDA graph on a GPU), saving its buffers. Backward: the
hand-derived BPTT loop (through a graph too). When a graph of the backward is requested (double
backward) it recomputes through the autograd twin, as the fused engine does. Under
``torch.autocast`` the products run in the autocast dtype and everything else in the state's
dtype; the loops cast explicitly with autocast switched off, so what a graph records does not
depend on the caller's autocast state.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from ..ops import autocast_of
from . import graphs
from .loops import (
    NORM_KEYS,
    Plan,
    gru_backward_loop,
    gru_forward_loop,
    lstm_backward_loop,
    lstm_forward_loop,
    rnn_backward_loop,
    rnn_forward_loop,
)
from .mogrifier import mogrifier_backward_loop, mogrifier_forward_loop

LOOPS = {  # family -> (forward, backward, the names of the buffers the forward saves)
    "lstm": (lstm_forward_loop, lstm_backward_loop, ("Hs", "C", "Cn", "Gs", "HP", "kh", "kc", *NORM_KEYS, "CMu", "CRs")),
    "gru": (gru_forward_loop, gru_backward_loop, ("Hs", "Gs", "GHn", "HP", "kh", *NORM_KEYS)),
    "rnn": (rnn_forward_loop, rnn_backward_loop, ("Hs", "Act", "HP", "kh", *NORM_KEYS)),
    "mogrifier": (mogrifier_forward_loop, mogrifier_backward_loop,
                  ("Hs", "C", "Cn", "Gs", "Xm", "SQ", "Hm", "SR", "HM", "kh", "kc")),
}


def family(cell) -> str:
    if cell.name == "mogrifier":
        return "mogrifier" if cell.rounds else "lstm"
    return {"gru": "gru", "rnn": "rnn"}.get(cell.name, "lstm")


def _no_autocast(x):
    try:
        return torch.autocast(x.device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know
        return contextlib.nullcontext()


def _forward_fn(plan, names, n_state):
    forward, _, keys = LOOPS[family(plan.cell)]
    n = len(names)

    def fn(*flat):  # params, x, state, keep masks (None where absent) -> y, state_n, saved buffers
        p, x = dict(zip(names, flat[:n])), flat[n]
        state, keep = flat[n + 1 : n + 1 + n_state], flat[n + 1 + n_state :]
        with _no_autocast(x):
            y, state_n, saved = forward(plan, p, x, state, None if all(k is None for k in keep) else keep)
        return [y, *state_n, *(saved[k] for k in keys)]

    return fn


def _backward_fn(plan, names, n_state):
    _, backward, keys = LOOPS[family(plan.cell)]
    n, m = len(names), len(keys)

    def fn(*flat):  # params, x, saved buffers, dy, dstate -> d params, dx, d state
        p, x = dict(zip(names, flat[:n])), flat[n]
        saved = dict(zip(keys, flat[n + 1 : n + 1 + m]))
        dy, dstate = flat[n + 1 + m], flat[n + 2 + m :]
        with _no_autocast(x):
            grads, dstate0 = backward(plan, p, x, saved, dy, dstate)
        return [*(grads.get(k) for k in names), grads.get("x"), *dstate0]

    return fn


def _forward(plan, names, n_state, keep, tensors):
    keep = (None,) * n_state if keep is None else tuple(keep)
    outs = graphs.call(("forward", plan, names, n_state), _forward_fn(plan, names, n_state), [*tensors, *keep])
    return outs[0], tuple(outs[1 : 1 + n_state]), outs[1 + n_state :]


class TritonLayer(torch.autograd.Function):
    """Forward: the Triton loop saving its buffers. Backward: its hand-written BPTT."""

    @staticmethod
    def forward(ctx, plan, names, keep, *tensors):
        n_state = len(tensors) - len(names) - 1
        y, state_n, saved = _forward(plan, names, n_state, keep, tensors)
        ctx.plan, ctx.names, ctx.keep, ctx.n_tensors = plan, names, keep, len(tensors)
        ctx.save_for_backward(*tensors, *saved)  # autograd frees the buffers after the backward
        return (y, *state_n)

    @staticmethod
    def backward(ctx, dy, *dstate):
        names, n = ctx.names, len(ctx.names)
        saved = ctx.saved_tensors
        tensors, buffers = saved[: ctx.n_tensors], saved[ctx.n_tensors :]
        if torch.is_grad_enabled():  # a graph of the backward is wanted: go through the twin
            return (None, None, None, *twin_grads(ctx.plan.cell, names, ctx.keep, tensors, (dy, *dstate)))
        plan = replace(ctx.plan, need_dx=ctx.needs_input_grad[3 + n])
        n_state = ctx.n_tensors - n - 1
        flat = [*tensors[: n + 1], *buffers, None if dy is None else dy.contiguous(), *dstate]
        outs = graphs.call(("backward", plan, names, n_state), _backward_fn(plan, names, n_state), flat)
        dparams = [d if ctx.needs_input_grad[3 + j] else None for j, d in enumerate(outs[:n])]
        return (None, None, None, *dparams, outs[n], *outs[n + 1 :])


def twin_grads(cell, names, keep, tensors, douts):
    """Vector-Jacobian product through the autograd loop, with a graph (for double backward)."""
    from ..autograd_loop import autograd_layer

    n = len(names)
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in tensors]
        y, state_n = autograd_layer(cell, dict(zip(names, inputs[:n])), inputs[n], tuple(inputs[n + 1 :]), keep)
        pairs = [(o, d) for o, d in zip((y, *state_n), douts) if d is not None]
        return torch.autograd.grad([o for o, _ in pairs], inputs, [d for _, d in pairs],
                                   create_graph=True, allow_unused=True)


def run(cell, params: dict, x, state, keep=None):
    """``(y (T, B, R), state_n)``; call only where ``refusal`` found nothing to refuse."""
    state = tuple(state)
    T, B = x.shape[:2]
    if T == 0 or B == 0:  # nothing to launch: the autograd twin is exact and free here
        from ..autograd_loop import autograd_layer

        return autograd_layer(cell, params, x, state, keep)
    keep_t = (None,) * len(state) if keep is None else tuple(keep)
    plan = Plan(cell, keep_h=keep_t[0] is not None, keep_c=len(keep_t) > 1 and keep_t[1] is not None,
                mask="mask_hh" in params, product_dtype=(autocast_of(x) or (None, x.dtype))[1])
    names = tuple(params)
    tensors = (*params.values(), x, *state)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out = TritonLayer.apply(plan, names, keep, *tensors)
        return out[0], tuple(out[1:])
    with torch.no_grad():
        y, state_n, _ = _forward(plan, names, len(state), keep, tensors)
    return y, state_n
