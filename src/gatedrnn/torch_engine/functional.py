"""One layer, one direction, over a whole sequence, in two engines that must agree.

    y, state_n = run_layer(cell, params, x, state, keep=None, engine="fused")

``params`` maps the single-layer names (``weight_ih``, ...) to tensors; ``x`` is ``(T, B, I)``;
``state`` is the tuple ``(h0,)`` or ``(h0, c0)``. ``keep`` is ``None`` or a tuple of masks, one
per state element, broadcastable to ``(T, B, size)``: after step ``t`` the state is
``keep * s_{t-1} + (1 - keep) * s_t``. Zoneout and variable-length (packed) batches are both
written as such masks.

- ``engine="reference"``: a plain autograd loop over ``cell.step`` (the slow twin).
- ``engine="fused"``: ``FusedLayer``, an ``autograd.Function`` whose forward runs the same loop
  without building a graph, saving each step's cache, and whose backward runs the cell's
  hand-derived ``step_backward`` in reverse. When a graph of the backward is requested
  (``create_graph=True``), the backward recomputes through the autograd twin instead, so second
  derivatives are exact and the first-order path keeps its speed.

Under ``torch.autocast`` both run the matrix products in the autocast dtype while the state keeps
the initial state's dtype (float32 ``c``); the fused backward runs its products under the
forward's autocast and sums the weight gradients of the steps in float32.
"""
from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..cells import Cell
from . import fast
from .ops import TORCH_OPS as ops


def mix_state(keep_t, prev, new):
    return tuple(new_s if k is None else torch.lerp(new_s, prev_s, k) for k, prev_s, new_s in zip(keep_t, prev, new))


def _keep_at(keep, t, n):
    return (None,) * n if keep is None else tuple(None if k is None else k[t] for k in keep)


def autocast_of(x):
    """``(device type, dtype)`` of the autocast region that ``x`` is computed in, or ``None``."""
    kind = x.device.type
    try:
        if torch.is_autocast_enabled(kind):
            return kind, torch.get_autocast_dtype(kind)
    except RuntimeError:  # a device type autocast does not know
        pass
    return None


def keep_dtypes(new, state):
    """``new`` in the dtypes of ``state``: under autocast a product makes a state (a projected
    ``h``, the ``h`` of a cell without biases) half precision; it stays in the initial state's
    dtype (the cell state ``c`` above all) so the loop's dtypes do not drift."""
    return tuple(n if n.dtype == s.dtype else n.to(s.dtype) for n, s in zip(new, state))


def reference_layer(cell: Cell, params: dict, x, state, keep=None):
    """The autograd twin: ``cell.step`` in a Python loop, differentiated by autograd."""
    amp = autocast_of(x)
    gx, _ = cell.input_proj(ops, params, x)
    ys = []
    for t in range(x.shape[0]):
        new, _ = cell.step(ops, params, gx[t], state)
        if amp:
            new = keep_dtypes(new, state)
        state = mix_state(_keep_at(keep, t, len(state)), state, new)
        ys.append(state[0])
    y = torch.stack(ys) if ys else x.new_zeros((0, x.shape[1], state[0].shape[-1]))
    return y, state


_SAVED = object()  # marks where a saved tensor goes back into the flattened caches


class FusedLayer(torch.autograd.Function):
    """Forward: the loop without a graph, caches saved. Backward: the hand-derived BPTT."""

    @staticmethod
    def forward(ctx, cell, names, n_state, keep, *tensors):
        params = dict(zip(names, tensors[: len(names)]))
        x = tensors[len(names)]
        state = tuple(tensors[len(names) + 1 :])
        ctx.amp = autocast_of(x)
        gx, in_cache = cell.input_proj(ops, params, x)
        ys, caches = [], []
        for t in range(x.shape[0]):
            new, cache = cell.step(ops, params, gx[t], state)
            if ctx.amp:
                new = keep_dtypes(new, state)
            state = mix_state(_keep_at(keep, t, n_state), state, new)
            caches.append(cache)
            ys.append(state[0])
        y = torch.stack(ys) if ys else x.new_zeros((0, x.shape[1], state[0].shape[-1]))
        ctx.cell, ctx.names, ctx.keep = cell, names, keep
        # the caches go through save_for_backward, so autograd frees them after the backward
        # unless the graph is retained (a second backward, or double backward through a stack)
        leaves, ctx.cache_spec = tree_flatten((caches, in_cache))
        ctx.cache_consts = [_SAVED if torch.is_tensor(a) else a for a in leaves]
        ctx.save_for_backward(*tensors, *(a for a in leaves if torch.is_tensor(a)))
        ctx.n_tensors = len(tensors)
        return (y, *state)

    @staticmethod
    def backward(ctx, dy, *dstate):
        if ctx.amp is None:
            return FusedLayer._backward(ctx, dy, *dstate)
        # the backward's products in the forward's precision, as autocast runs built-in ops' backward
        with torch.autocast(ctx.amp[0], dtype=ctx.amp[1]):
            return FusedLayer._backward(ctx, dy, *dstate)

    @staticmethod
    def _backward(ctx, dy, *dstate):
        cell, names, keep = ctx.cell, ctx.names, ctx.keep
        saved = ctx.saved_tensors
        tensors = saved[: ctx.n_tensors]
        params = dict(zip(names, tensors[: len(names)]))
        x, state0 = tensors[len(names)], tuple(tensors[len(names) + 1 :])
        if torch.is_grad_enabled():  # a graph of the backward is wanted: go through the twin
            return (None, None, None, None, *_twin_grads(cell, params, x, state0, keep, dy, dstate, tensors))
        rest = iter(saved[ctx.n_tensors :])
        caches, in_cache = tree_unflatten([next(rest) if a is _SAVED else a for a in ctx.cache_consts], ctx.cache_spec)
        dstate = tuple(torch.zeros_like(s) if d is None else d for s, d in zip(state0, dstate))
        dy = torch.zeros((x.shape[0], x.shape[1], state0[0].shape[-1]), dtype=x.dtype, device=x.device) if dy is None else dy
        grads: dict = {}
        if ctx.amp:  # the per-step weight gradients come out of half-precision products: sum them in float32
            grads = {n: torch.zeros_like(p, dtype=torch.promote_types(p.dtype, torch.float32)) for n, p in params.items()}
        dgx = [None] * x.shape[0]
        for t in reversed(range(x.shape[0])):
            dstate = (dstate[0] + dy[t],) + dstate[1:]
            k = _keep_at(keep, t, len(dstate))
            carried = tuple(None if kk is None else kk * d for kk, d in zip(k, dstate))
            dstate = tuple(d if kk is None else (1.0 - kk) * d for kk, d in zip(k, dstate))
            dgx[t], dstate = cell.step_backward(ops, params, caches[t], dstate, grads)
            dstate = tuple(d if c is None else d + c for d, c in zip(dstate, carried))
        if x.shape[0]:
            dx = cell.input_proj_backward(ops, params, in_cache, torch.stack(dgx), grads)
        else:
            dx = torch.zeros_like(x)
        dparams = [grads[n].to(params[n].dtype) if n in grads else torch.zeros_like(params[n]) for n in names]
        dstate = tuple(d.to(s.dtype) for d, s in zip(dstate, state0))
        return (None, None, None, None, *dparams, dx.to(x.dtype), *dstate)


def _twin_grads(cell, params, x, state0, keep, dy, dstate, tensors):
    """Vector-Jacobian product through the autograd twin, with a graph (for double backward)."""
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in tensors]
        names = list(params)
        p = dict(zip(names, inputs[: len(names)]))
        y, state = reference_layer(cell, p, inputs[len(names)], tuple(inputs[len(names) + 1 :]), keep)
        outs, grads_out = [y], [dy]
        for s, d in zip(state, dstate):
            outs.append(s)
            grads_out.append(d)
        pairs = [(o, g) for o, g in zip(outs, grads_out) if g is not None]
        return torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                                   create_graph=True, allow_unused=True)


ENGINES = ("fused", "reference")


def run_layer(cell: Cell, params: dict, x, state, keep=None, engine: str = "fused"):
    """``(y (T, B, R), state_n)`` for one layer and direction; see the module docstring."""
    if engine == "reference":
        return reference_layer(cell, params, x, tuple(state), keep)
    if engine != "fused":
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if keep is not None and torch.is_grad_enabled() and any(k is not None and k.requires_grad for k in keep):
        raise ValueError("keep masks are constants to the fused engine, but one requires grad; "
                         "detach it, or use engine='reference' to differentiate through it")
    mask = params.get("mask_hh")
    if mask is not None and torch.is_grad_enabled() and mask.requires_grad:
        raise ValueError("mask_hh (state dropout) is a constant to the fused engine, but it requires grad; "
                         "detach it, or use engine='reference' to differentiate through it")
    if fast.supports(cell, params, x, keep, state):  # a hand-specialised loop for the hot configurations
        return fast.run_fast(cell, params, x, state, keep)
    names = tuple(params)
    out = FusedLayer.apply(cell, names, len(state), keep, *params.values(), x, *state)
    return out[0], tuple(out[1:])
