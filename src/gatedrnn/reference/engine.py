"""The NumPy reference engine: a cell run over a sequence, forward and hand-derived BPTT backward.

    y, state_n, cache = forward("lstm", params, x)          # x (T, B, I) -> y (T, B, R)
    grads = backward(cache, dy, d_state)                      # dict: every parameter, x, h0, c0

``state`` is ``h0`` for ``rnn``/``gru``/``indrnn``/``mingru``/``minlstm``, ``(h0, c0)`` for the LSTM
family and ``(h0, c0, n0, m0)`` for the ``slstm`` (``cell.state_names``). Zoneout (Krueger
et al. 2017) is applied here, to any cell but the ``slstm``, as keep masks: with ``keep`` masks ``m``
(one per state element, ``(T, B, .)``, 1 = keep the previous value) the state after step ``t`` is
``m * s_{t-1} + (1 - m) * s_t``; a mask filled with the probability ``p`` gives the expectation
used in evaluation. The loop itself is ``reference/sequence.py``, which the torch engine runs too.

Variational dropout of the recurrent state (Gal and Ghahramani 2016) is ``mask_hh``: one
``(B, R)`` mask for the whole sequence, multiplying the ``h`` that feeds the recurrent product
(the cells read it as the non-parameter entry ``mask_hh``; see ``Cell.project``). The torch
engine takes the same two masks under the same names (``run_layer(..., keep=...)``,
``params["mask_hh"]``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..cells import NUMPY_OPS, Cell, init_array, make_cell
from .sequence import sequence_backward, sequence_forward

ops = NUMPY_OPS


def init_params(cell, input_size: int, hidden_size: int, rng=None, dtype=np.float64, **options) -> dict:
    """Parameters of one layer of ``cell``, as a dict of NumPy arrays keyed as in ``torch.nn.LSTMCell``.

    ``cell`` is a name (``"lstm"``) or a ``Cell``; ``input_size`` is ``I`` and ``hidden_size`` is
    ``H``; ``options`` are the cell's own (``proj_size=4``, ``rounds=4``, ...). Each array is
    initialised as the cell's parameter spec says (PyTorch's uniform ``±1/sqrt(H)`` for the
    weights), from ``rng`` (a seed or a ``numpy.random.Generator``; ``None``: fresh entropy), in
    ``dtype`` (float64 by default: the reference is the oracle, checked against finite differences).

        params = init_params("lstm", input_size=3, hidden_size=8, rng=0)
        params["weight_ih"].shape, params["weight_hh"].shape          # (32, 3), (32, 8)
    """
    cell = make_cell(cell, **options)
    if input_size <= 0 or hidden_size <= 0:
        raise ValueError(f"sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}")
    rng = np.random.default_rng(rng)
    return {s.name: init_array(s, rng, dtype) for s in cell.param_spec(input_size, hidden_size)}


def pack_state(cell: Cell, state):
    """The public form of a state (``h``, ``(h, c)``, ...) as the tuple the cells step on."""
    if not cell.has_cell_state:
        return (state,)
    names = cell.state_names
    if not isinstance(state, (tuple, list)) or len(state) != len(names):
        got = f"{len(state)} element(s)" if isinstance(state, (tuple, list)) else f"shape {np.shape(state)}"
        raise ValueError(f"cell {cell.name!r} takes its state as a tuple ({', '.join(names)}), got {got}")
    return tuple(state)


def unpack_state(cell: Cell, state):
    return tuple(state) if cell.has_cell_state else state[0]


@dataclass
class Cache:
    cell: Cell
    params: dict
    in_cache: object
    steps: list
    keep: tuple | None
    dtype: np.dtype
    x_shape: tuple

    @property
    def zoneout(self):  # the keep masks' name before 0.2
        return self.keep


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
        for s, size, name in zip(state, cell.state_sizes(H), cell.state_names):
            name = f"{name}0"
            if tuple(s.shape) != (B, size):
                raise ValueError(f"{name} must be {(B, size)}, got {tuple(s.shape)}")
    return T, B, I, H


def check_keep(cell: Cell, masks, T, B, H, dtype):
    """Masks as a tuple in the dtype of ``x`` (float64 masks would silently promote a float32 run)."""
    sizes = cell.state_sizes(H)
    masks = tuple(masks)
    if len(masks) != len(sizes):
        raise ValueError(f"keep needs {len(sizes)} mask(s), one per state element, got {len(masks)}")
    out = []
    for mask, size, name in zip(masks, sizes, cell.state_names):
        mask = np.asarray(mask, dtype=dtype)
        if mask.shape != (T, B, size):
            raise ValueError(f"keep mask for {name} must be {(T, B, size)}, got {mask.shape}")
        out.append(mask)
    if not cell.supports_zoneout and not (all(np.array_equal(m, out[0]) for m in out)
                                          and np.isin(out[0], (0.0, 1.0)).all()):
        # the sLSTM's c, n and m are stored at one scale: keeping some and not others mixes scales
        raise ValueError(f"cell {cell.name!r} keeps its state whole: keep masks must be 0 or 1 and the same for "
                         "every state element (padding); zoneout is not defined for it")
    return tuple(out)


def _renamed(new_value, old_value, old, new):
    """The value of a keyword renamed in 0.2, warning where the old name was used."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"give {new}= (or the deprecated {old}=), not both")
    warnings.warn(f"forward(..., {old}=) is deprecated: call it {new}=", DeprecationWarning, stacklevel=3)
    return old_value


def forward(cell, params: dict, x: np.ndarray, state=None, *, keep=None, mask_hh=None, zoneout=None,
            state_mask=None, **options):
    """Run ``cell`` over ``x`` ``(T, B, I)``; returns ``(y (T, B, R), state_n, cache)``.

    ``params`` is a dict as ``init_params`` makes it (``R`` is the output size: ``H``, or
    ``proj_size``); ``state`` is the initial ``h0`` ``(B, R)`` (``rnn``, ``gru``) or ``(h0, c0)``
    (the LSTM family), zeros when ``None``; ``state_n`` has the same form. ``options`` configure
    the cell as in ``init_params`` and must match the ones the parameters were made with. Pass
    ``cache`` to ``backward`` for the gradients.

    ``keep``: ``None`` or a tuple of masks, one per state element, each ``(T, B, size)``: zoneout
    (1 keeps the previous value). ``mask_hh``: ``None`` or ``(B, R)``, the dropout mask (already
    scaled) on ``h`` before the recurrent product, the same at every step. ``zoneout=`` and
    ``state_mask=`` are their deprecated names.
    """
    keep = _renamed(keep, zoneout, "zoneout", "keep")
    mask_hh = _renamed(mask_hh, state_mask, "state_mask", "mask_hh")
    cell = make_cell(cell, **options)
    x = np.asarray(x)
    packed = None if state is None else pack_state(cell, state)
    T, B, _, H = check_inputs(cell, params, x, packed)
    if packed is None:
        packed = tuple(np.zeros((B, size), dtype=x.dtype) for size in cell.state_sizes(H))
    if keep is not None:
        keep = check_keep(cell, keep, T, B, H, x.dtype)
    if mask_hh is not None and not cell.has_recurrent_product:
        raise ValueError(f"mask_hh drops the state that feeds the recurrent product; cell {cell.name!r} has none")
    if mask_hh is not None:
        mask_hh = np.asarray(mask_hh, dtype=x.dtype)  # a float64 mask would promote a float32 run
        if mask_hh.shape != (B, cell.state_sizes(H)[0]):
            raise ValueError(f"mask_hh must be {(B, cell.state_sizes(H)[0])}, got {mask_hh.shape}")
        params = {**params, "mask_hh": mask_hh}
    y, packed, steps, in_cache = sequence_forward(ops, cell, params, x, packed, keep)
    cache = Cache(cell, params, in_cache, steps, keep, x.dtype, x.shape)
    return y, unpack_state(cell, packed), cache


def backward(cache: Cache, dy: np.ndarray, d_state=None) -> dict:
    """Gradient of ``sum(y * dy) + sum(state_n * d_state)`` for every parameter, ``x`` and the
    initial state (``h0``, ``c0``, ...: one per ``cell.state_names``): BPTT with ``dstate`` carried back.

    ``cache`` is the third value ``forward`` returned; ``dy`` ``(T, B, R)`` is the gradient of the
    loss with respect to the outputs, ``d_state`` (``None``: zeros) with respect to the final
    state, in the state's form. Returns a dict with the keys of ``params`` plus ``"x"``,
    ``"h0"``, ``"c0"``, ... (one per ``cell.state_names``), each shaped like what it differentiates.

        y, state_n, cache = forward("gru", params, x)
        grads = backward(cache, dy=np.ones_like(y))            # d sum(y) / d everything
    """
    cell, p = cache.cell, cache.params
    T, B, _ = cache.x_shape
    H = cell.hidden_size_of(p)
    zero = tuple(np.zeros((B, size), dtype=cache.dtype) for size in cell.state_sizes(H))
    dstate = zero if d_state is None else pack_state(cell, d_state)
    grads: dict = {}
    x_like = np.broadcast_to(np.zeros((), dtype=cache.dtype), cache.x_shape)  # dx's shape and dtype
    dx, dstate = sequence_backward(ops, cell, p, cache.steps, cache.in_cache, x_like, dy, dstate, cache.keep, grads)
    out = {k: grads.get(k, np.zeros_like(v)) for k, v in p.items() if not k.startswith("mask_")}
    out["x"] = dx
    for name, d in zip(cell.state_names, dstate):
        out[f"{name}0"] = d
    return out
