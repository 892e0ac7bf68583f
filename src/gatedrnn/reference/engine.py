"""The NumPy reference engine: a cell run over a sequence, forward and hand-derived BPTT backward.

    y, state_n, cache = forward("lstm", params, x)          # x (T, B, I) -> y (T, B, R)
    grads = backward(cache, dy, d_state)                      # dict: every parameter, x, h0, c0

``state`` is ``h0`` for ``rnn``/``gru`` and ``(h0, c0)`` for the LSTM family. Zoneout (Krueger
et al. 2017) is applied here, to any cell: with masks ``m`` (one per state element, ``(T, B, .)``,
1 = keep the previous value) the state after step ``t`` is ``m * s_{t-1} + (1 - m) * s_t``; a
mask filled with the probability ``p`` gives the expectation used in evaluation.

Variational dropout of the recurrent state (Gal and Ghahramani 2016) is ``state_mask``: one
``(B, R)`` mask for the whole sequence, multiplying the ``h`` that feeds the recurrent product
(the cells read it as the non-parameter entry ``mask_hh``; see ``Cell.project``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cells import NUMPY_OPS, Cell, init_array, make_cell

ops = NUMPY_OPS


def init_params(cell, input_size: int, hidden_size: int, rng=None, dtype=np.float64, **options) -> dict:
    """Parameters of one layer, initialised as the cell's spec says (``rng``: seed or Generator)."""
    cell = make_cell(cell, **options)
    if input_size <= 0 or hidden_size <= 0:
        raise ValueError(f"sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}")
    rng = np.random.default_rng(rng)
    return {s.name: init_array(s, rng, dtype) for s in cell.param_spec(input_size, hidden_size)}


def pack_state(cell: Cell, state):
    """The public form of a state (``h`` or ``(h, c)``) as the tuple the cells step on."""
    return tuple(state) if cell.has_cell_state else (state,)


def unpack_state(cell: Cell, state):
    return tuple(state) if cell.has_cell_state else state[0]


@dataclass
class Cache:
    cell: Cell
    params: dict
    in_cache: object
    steps: list
    zoneout: tuple | None
    dtype: np.dtype
    x_shape: tuple


def check_inputs(cell: Cell, params: dict, x, state):
    """Validate shapes at the boundary; returns ``(T, B, I, H)``."""
    expected = {s.name: s.shape for s in cell.param_spec(cell.input_size_of(params), cell.hidden_size_of(params))}
    got = {k: tuple(v.shape) for k, v in params.items()}
    if expected != got:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = {k: (expected[k], got[k]) for k in set(expected) & set(got) if expected[k] != got[k]}
        raise ValueError(
            f"parameters do not match cell {cell!r}: missing {missing}, unexpected {extra}, "
            f"shape (expected, got) {wrong}"
        )
    if x.ndim != 3:
        raise ValueError(f"x must be (T, B, I), got {x.ndim} dimensions, shape {x.shape}")
    T, B, I = x.shape
    H = cell.hidden_size_of(params)
    if I != cell.input_size_of(params):
        raise ValueError(f"x has {I} features, expected input_size={cell.input_size_of(params)}")
    if state is not None:
        for s, size, name in zip(state, cell.state_sizes(H), ("h0", "c0")):
            if tuple(s.shape) != (B, size):
                raise ValueError(f"{name} must be {(B, size)}, got {tuple(s.shape)}")
    return T, B, I, H


def check_zoneout(cell: Cell, masks, T, B, H, dtype):
    """Masks as a tuple in the dtype of ``x`` (float64 masks would silently promote a float32 run)."""
    sizes = cell.state_sizes(H)
    masks = tuple(masks)
    if len(masks) != len(sizes):
        raise ValueError(f"zoneout needs {len(sizes)} mask(s), one per state element, got {len(masks)}")
    out = []
    for mask, size, name in zip(masks, sizes, ("h", "c")):
        mask = np.asarray(mask, dtype=dtype)
        if mask.shape != (T, B, size):
            raise ValueError(f"zoneout mask for {name} must be {(T, B, size)}, got {mask.shape}")
        out.append(mask)
    return tuple(out)


def forward(cell, params: dict, x: np.ndarray, state=None, *, zoneout=None, state_mask=None, **options):
    """Run ``cell`` over ``x`` ``(T, B, I)``; returns ``(y (T, B, R), state_n, cache)``.

    ``zoneout``: ``None`` or a tuple of masks, one per state element, each ``(T, B, size)``.
    ``state_mask``: ``None`` or ``(B, R)``, the dropout mask (already scaled) on ``h`` before
    the recurrent product, the same at every step.
    """
    cell = make_cell(cell, **options)
    x = np.asarray(x)
    packed = None if state is None else pack_state(cell, state)
    T, B, _, H = check_inputs(cell, params, x, packed)
    if packed is None:
        packed = tuple(np.zeros((B, size), dtype=x.dtype) for size in cell.state_sizes(H))
    if zoneout is not None:
        zoneout = check_zoneout(cell, zoneout, T, B, H, x.dtype)
    if state_mask is not None:
        state_mask = np.asarray(state_mask, dtype=x.dtype)  # a float64 mask would promote a float32 run
        if state_mask.shape != (B, cell.state_sizes(H)[0]):
            raise ValueError(f"state_mask must be {(B, cell.state_sizes(H)[0])}, got {state_mask.shape}")
        params = {**params, "mask_hh": state_mask}
    gx, in_cache = cell.input_proj(ops, params, x)  # (T, B, G*H): one product for all steps
    steps, ys = [], []
    for t in range(T):
        new, step_cache = cell.step(ops, params, gx[t], packed)
        if zoneout is not None:
            new = tuple(m[t] * s + (1.0 - m[t]) * n for m, s, n in zip(zoneout, packed, new))
        steps.append(step_cache)
        packed = new
        ys.append(packed[0])
    y = np.stack(ys) if ys else np.zeros((0, B, cell.output_size(H)), dtype=x.dtype)
    cache = Cache(cell, params, in_cache, steps, zoneout, x.dtype, x.shape)
    return y, unpack_state(cell, packed), cache


def backward(cache: Cache, dy: np.ndarray, d_state=None) -> dict:
    """Gradient of ``sum(y * dy) + sum(state_n * d_state)`` for every parameter, ``x`` and the
    initial state (``h0``, and ``c0`` for the LSTM family): BPTT with ``dstate`` carried back."""
    cell, p = cache.cell, cache.params
    T, B, _ = cache.x_shape
    H = cell.hidden_size_of(p)
    zero = tuple(np.zeros((B, size), dtype=cache.dtype) for size in cell.state_sizes(H))
    dstate = zero if d_state is None else pack_state(cell, d_state)
    grads: dict = {}
    dgx = [None] * T
    for t in reversed(range(T)):
        dstate = (dstate[0] + dy[t],) + tuple(dstate[1:])  # y_t is h_t
        if cache.zoneout is not None:  # s_t = m s_{t-1} + (1 - m) s_new
            m = [mask[t] for mask in cache.zoneout]
            carried = tuple(mk * d for mk, d in zip(m, dstate))
            dstate = tuple((1.0 - mk) * d for mk, d in zip(m, dstate))
        dgx[t], dstate = cell.step_backward(ops, p, cache.steps[t], dstate, grads)
        if cache.zoneout is not None:
            dstate = tuple(d + c for d, c in zip(dstate, carried))
    if T:
        dx = cell.input_proj_backward(ops, p, cache.in_cache, np.stack(dgx), grads)
    else:
        dx = np.zeros(cache.x_shape, dtype=cache.dtype)
    out = {k: grads.get(k, np.zeros_like(v)) for k, v in p.items() if not k.startswith("mask_")}
    out["x"] = dx
    out["h0"] = dstate[0]
    if cell.has_cell_state:
        out["c0"] = dstate[1]
    return out
