"""The reference engine trains on its own: plain SGD on a squared error, NumPy only.

The toy of the classic NumPy LSTM walkthrough (nicodjimenez/lstm): a handful of fixed random input
vectors, one target number in ``(-1, 1)`` per step, and the loss ``sum_t (h_t[0] - y_t)^2`` on the
first unit of ``h``. Its cell has no ``tanh`` on the output (``h = o * c``): here that is
``output_activation="identity"``, and any cell of the registry fits the same way.

    result = fit_sequence([-0.5, 0.2, 0.1, -0.5], output_activation="identity")
    result.losses[-1]  # below 1e-3 after 100 iterations
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..cells import make_cell
from .engine import backward, forward, init_params


@dataclass
class FitResult:
    params: dict
    x: np.ndarray  # (T, 1, I) the inputs the targets were fitted to
    targets: np.ndarray  # (T,)
    losses: list = field(default_factory=list)  # one per iteration, before its update
    predictions: np.ndarray | None = None  # (T,) h_t[0] after the last update


def squared_error(y: np.ndarray, targets: np.ndarray):
    """``sum_t (y[t, 0, 0] - targets[t])^2`` and its gradient with respect to ``y`` ``(T, 1, R)``."""
    diff = y[:, 0, 0] - targets  # (T,)
    dy = np.zeros_like(y)
    dy[:, 0, 0] = 2.0 * diff  # only the first unit of h is read by the loss
    return float(diff @ diff), dy


def sgd_update(params: dict, grads: dict, lr: float) -> None:
    """``p -= lr * dp`` in place, for every parameter."""
    for key, value in params.items():
        value -= lr * grads[key]


def fit_sequence(targets, cell="lstm", input_size: int = 50, hidden_size: int = 100, iterations: int = 100,
                 lr: float = 0.1, seed: int = 0, callback: Callable[[int, float], None] | None = None,
                 **options) -> FitResult:
    """Fit ``h_t[0]`` to ``targets[t]`` for fixed random inputs ``x_t`` with full-batch SGD.

    ``callback(iteration, loss)`` is called once per iteration (the library itself prints nothing).
    """
    cell = make_cell(cell, **options)
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 1 or targets.size == 0:
        raise ValueError(f"targets must be a non-empty 1-D sequence, got shape {targets.shape}")
    if iterations < 0 or lr <= 0:
        raise ValueError(f"iterations must be >= 0 and lr > 0, got iterations={iterations}, lr={lr}")
    rng = np.random.default_rng(seed)
    params = init_params(cell, input_size, hidden_size, rng)
    x = rng.random((targets.size, 1, input_size))  # (T, 1, I), in [0, 1) as in the walkthrough
    result = FitResult(params, x, targets)
    for iteration in range(iterations):
        y, _, cache = forward(cell, params, x)
        loss, dy = squared_error(y, targets)
        grads = backward(cache, dy)
        sgd_update(params, grads, lr)
        result.losses.append(loss)
        if callback is not None:
            callback(iteration, loss)
    y, _, _ = forward(cell, params, x)
    result.predictions = y[:, 0, 0].copy()
    return result
