"""The one sequence loop: a cell stepped over ``x`` ``(T, B, I)``, forward and BPTT backward.

Written against the ``ops`` namespace, as the cells are, so the NumPy reference engine
(``reference/engine.py``), the torch autograd loop and the torch engine's generic fused loop all
run these lines. ``keep`` is ``None`` or a tuple of masks, one per state element (``None`` for a
state that is not mixed), broadcastable to ``(T, B, size)``: after step ``t`` the state is
``keep * s_{t-1} + (1 - keep) * s_t``. Zoneout and the padded steps of variable-length (packed)
batches are both written as such masks; directions are the caller's (a reversed sequence is a
sequence).
"""
from __future__ import annotations


def keep_at(keep, t, n):
    """Each state element's keep mask at step ``t`` (``None``: not mixed)."""
    return (None,) * n if keep is None else tuple(None if k is None else k[t] for k in keep)


def mix_state(ops, keep_t, prev, new):
    """``keep * prev + (1 - keep) * new`` per state element, ``new`` where the mask is ``None``."""
    return tuple(n if k is None else ops.keep_mix(k, p, n) for k, p, n in zip(keep_t, prev, new))


def sequence_forward(ops, cell, params, x, state, keep=None, *, save=True, cast=None):
    """``(y (T, B, R), state_n, caches, in_cache)``: ``caches`` holds each step's cache (empty
    without ``save``). ``cast(new, prev)``, if given, maps each step's new state before mixing
    (the torch engine keeps the state's dtypes under autocast)."""
    gx, in_cache = cell.input_proj(ops, params, x)  # (T, B, G*H): one product for all steps
    state = tuple(state)
    ys, caches = [], []
    for t in range(x.shape[0]):
        new, cache = cell.step(ops, params, gx[t], state)
        if cast is not None:
            new = cast(new, state)
        state = mix_state(ops, keep_at(keep, t, len(state)), state, new)
        if save:
            caches.append(cache)
        ys.append(state[0])
    y = ops.stack(ys) if ys else ops.new_zeros(x, (0, x.shape[1], state[0].shape[-1]))
    return y, state, caches, in_cache


def sequence_backward(ops, cell, params, caches, in_cache, x, dy, dstate, keep, grads):
    """BPTT: the gradient of ``sum(y * dy) + sum(state_n * dstate)``. Adds every parameter's
    gradient into ``grads``; returns ``(dx, dstate_0)``. ``dy`` ``(T, B, R)`` and ``dstate``
    (a tuple) are arrays, not ``None``."""
    T = len(caches)
    dgx = [None] * T
    for t in reversed(range(T)):
        dstate = (dstate[0] + dy[t],) + tuple(dstate[1:])  # y_t is h_t
        k = keep_at(keep, t, len(dstate))  # s_t = k s_{t-1} + (1 - k) s_new
        carried = tuple(None if kk is None else kk * d for kk, d in zip(k, dstate))
        dstate = tuple(d if kk is None else (1.0 - kk) * d for kk, d in zip(k, dstate))
        dgx[t], dstate = cell.step_backward(ops, params, caches[t], dstate, grads)
        dstate = tuple(d if c is None else d + c for d, c in zip(dstate, carried))
    if T:
        dx = cell.input_proj_backward(ops, params, in_cache, ops.stack(dgx), grads)
    else:
        dx = ops.zeros_like(x)
    return dx, dstate
