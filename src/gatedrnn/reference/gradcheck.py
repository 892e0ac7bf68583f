"""Central finite differences against the hand-derived backward of the reference engine."""
from __future__ import annotations

import numpy as np

from ..cells import make_cell
from .engine import backward, forward, init_params, unpack_state


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``|a - b| / max(|a|, |b|)`` in the 2-norm; 0 when both are zero."""
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def numerical_gradient(f, array: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to ``array`` (changed in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + eps
        plus = f()
        flat[k] = saved - eps
        minus = f()
        flat[k] = saved
        gflat[k] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(cell, input_size=3, hidden_size=4, seq_len=5, batch=2, seed=0, eps=1e-6,
              zoneout=None, dropout_state=None, backward_fn=backward, **options) -> dict[str, float]:
    """Relative error of ``backward_fn`` against central differences, per gradient.

    Builds a ``cell`` (a name or a ``Cell``, with its ``options``) of ``input_size`` and
    ``hidden_size``, random parameters, input ``(seq_len, batch, input_size)`` and state from
    ``seed``, and compares each gradient ``backward_fn`` (the hand-derived ``backward`` by default)
    returns with central differences of step ``eps``. A correct backward gives errors around
    1e-8 or below in float64; ``gatedrnn gradcheck`` fails above 1e-6.

        errors = gradcheck("peephole", hidden_size=3)              # {"weight_ih": 2e-10, ...}
        assert max(errors.values()) < 1e-6

    The loss is ``sum(y * dy) + sum(state_n * d_state)`` with random ``dy`` and ``d_state``, in
    float64; the keys are the parameter names plus ``x`` and the initial state (``h0``, ``c0``, ...).
    The cell draws the initial state (``Cell.sample_state``) and shapes ``d_state``
    (``Cell.invariant_dstate``), so a state with a redundancy is checked on what it defines.
    ``zoneout`` and ``dropout_state`` may be probabilities: masks are then drawn from the same
    seed (the state mask scaled by ``1 / (1 - p)``, as in training).
    """
    cell = make_cell(cell, **options)
    rng = np.random.default_rng(seed)
    params = init_params(cell, input_size, hidden_size, rng)
    T, B = seq_len, batch
    x = rng.standard_normal((T, B, input_size))
    sizes = cell.state_sizes(hidden_size)
    state = cell.sample_state(rng, B, hidden_size)
    masks = None
    if zoneout:
        masks = tuple((rng.random((T, B, s)) < zoneout).astype(np.float64) for s in sizes)
    dy = rng.standard_normal((T, B, sizes[0]))
    d_state = [rng.standard_normal((B, s)) for s in sizes]
    state_mask = None
    if dropout_state:  # drawn last, so the other draws stay those of a run without it
        state_mask = (rng.random((B, sizes[0])) >= dropout_state) / (1.0 - dropout_state)

    def loss():
        y, state_n, _ = forward(cell, params, x, unpack_state(cell, state), keep=masks, mask_hh=state_mask)
        state_n = state_n if cell.has_cell_state else (state_n,)
        return float((y * dy).sum() + sum((s * d).sum() for s, d in zip(state_n, d_state)))

    _, state_n, cache = forward(cell, params, x, unpack_state(cell, state), keep=masks, mask_hh=state_mask)
    d_state = cell.invariant_dstate(state_n if cell.has_cell_state else (state_n,), d_state)
    analytic = backward_fn(cache, dy, unpack_state(cell, d_state))
    arrays = {**params, "x": x, **{f"{name}0": s for name, s in zip(cell.state_names, state)}}
    return {k: relative_error(analytic[k], numerical_gradient(loss, a, eps)) for k, a in arrays.items()}
