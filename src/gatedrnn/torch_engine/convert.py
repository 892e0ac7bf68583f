"""Weight converters between gatedrnn's (``torch.nn``'s) LSTM layout and Keras's and TensorFlow 1's.

Ours, per layer and direction (``torch.nn.LSTM``): ``weight_ih`` ``(4H, I)``, ``weight_hh``
``(4H, H)``, ``bias_ih``, ``bias_hh`` ``(4H,)``, gate blocks ``i, f, g, o``, and
``a = x W_ih^T + b_ih + h W_hh^T + b_hh``.

- Keras ``LSTM``/``LSTMCell`` (``get_weights()``): ``kernel`` ``(I, 4H)``, ``recurrent_kernel``
  ``(H, 4H)``, ``bias`` ``(4H,)``, blocks ``i, f, c, o``; ``z = x K + h R + b``. Same gate order,
  transposed, one bias (ours split as ``bias_ih = b``, ``bias_hh = 0``; back as their sum).
- TensorFlow 1 ``BasicLSTMCell``: ``kernel`` ``(I+H, 4H)`` read by ``[x, h] K + b``, blocks
  ``i, j, f, o`` (``j`` is our ``g``), and ``forget_bias`` (default 1.0) added to ``f`` at compute
  time: our ``forget_bias`` option does the same, so it is carried over, not folded into ``b``.
  Its state tuple is ``(c, h)``; ours is ``(h, c)``.

Everything works on NumPy arrays or tensors and returns NumPy arrays (``load_layer`` copies them
into a module). ``params`` is a single-layer dict, e.g. ``module.layer_params(k)`` or a reference
engine dict.
"""
from __future__ import annotations

import numpy as np
import torch

#: TF1's blocks i, j, f, o in our order i, f, g(=j), o; the permutation is its own inverse
TF1_ORDER = (0, 2, 1, 3)


def _array(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _blocks(a, order, axis):
    """Reorder the four gate blocks of ``a`` along ``axis``."""
    parts = np.split(a, 4, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


def _check(name, a, shape):
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")


def _lstm_sizes(params):
    w_ih, w_hh = _array(params["weight_ih"]), _array(params["weight_hh"])
    H = w_ih.shape[0] // 4
    if w_ih.shape[0] != 4 * H or w_hh.shape != (4 * H, H):
        raise ValueError(f"expected a plain LSTM layer (weight_ih (4H, I), weight_hh (4H, H)), got "
                         f"weight_ih {w_ih.shape}, weight_hh {w_hh.shape}")
    extra = sorted(set(params) - {"weight_ih", "weight_hh", "bias_ih", "bias_hh"})
    if extra:
        raise ValueError(f"these layouts hold a plain LSTM layer; got extra parameters {extra}")
    return w_ih, w_hh, H


# -- Keras ---------------------------------------------------------------------------------
def from_keras_lstm(kernel, recurrent_kernel, bias=None) -> dict:
    """Keras ``(kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,) or None)`` -> our params."""
    kernel, recurrent_kernel = _array(kernel), _array(recurrent_kernel)
    H = recurrent_kernel.shape[0]
    _check("kernel", kernel, (kernel.shape[0], 4 * H))
    _check("recurrent_kernel", recurrent_kernel, (H, 4 * H))
    params = {"weight_ih": kernel.T.copy(), "weight_hh": recurrent_kernel.T.copy()}
    if bias is not None:
        bias = _array(bias)
        _check("bias", bias, (4 * H,))
        params["bias_ih"] = bias.copy()
        params["bias_hh"] = np.zeros_like(bias)
    return params


def to_keras_lstm(params) -> tuple:
    """Our params -> Keras ``(kernel, recurrent_kernel, bias)``; ``bias`` is ``None`` without biases
    (a Keras layer with ``use_bias=False``)."""
    w_ih, w_hh, _ = _lstm_sizes(params)
    bias = None
    if "bias_ih" in params:
        bias = _array(params["bias_ih"]) + _array(params["bias_hh"])
    return w_ih.T.copy(), w_hh.T.copy(), bias


# -- TensorFlow 1 BasicLSTMCell ---------------------------------------------------------------
def from_tf1_basic_lstm(kernel, bias, forget_bias: float = 1.0) -> tuple[dict, dict]:
    """TF1 ``BasicLSTMCell`` ``(kernel (I+H, 4H), bias (4H,))`` -> ``(params, options)``, where
    ``options = {"forget_bias": forget_bias}`` goes to the module (``gatedrnn.LSTM(..., **options)``)."""
    kernel, bias = _array(kernel), _array(bias)
    H = kernel.shape[1] // 4
    if kernel.shape[1] != 4 * H or kernel.shape[0] <= H:
        raise ValueError(f"kernel must have shape (I+H, 4H) with I >= 1, got {kernel.shape}")
    _check("bias", bias, (4 * H,))
    I = kernel.shape[0] - H
    w = _blocks(kernel, TF1_ORDER, axis=1).T  # (4H, I+H), blocks i, f, g, o
    params = {
        "weight_ih": w[:, :I].copy(),
        "weight_hh": w[:, I:].copy(),
        "bias_ih": _blocks(bias, TF1_ORDER, axis=0),
        "bias_hh": np.zeros_like(bias),
    }
    return params, {"forget_bias": float(forget_bias)}


def to_tf1_basic_lstm(params, forget_bias: float = 0.0, tf_forget_bias: float = 1.0) -> tuple:
    """Our params (and the module's ``forget_bias``) -> TF1 ``(kernel, bias)`` for a
    ``BasicLSTMCell(forget_bias=tf_forget_bias)``: the difference of the two forget biases is
    folded into the stored forget bias, so the cell computes the same either way."""
    w_ih, w_hh, H = _lstm_sizes(params)
    if "bias_ih" in params:
        bias = _array(params["bias_ih"]) + _array(params["bias_hh"])
    else:
        bias = np.zeros(4 * H, dtype=w_ih.dtype)  # BasicLSTMCell always has a bias
    bias = bias.copy()
    bias[H : 2 * H] += forget_bias - tf_forget_bias  # the f block, in our order
    kernel = np.concatenate([w_ih, w_hh], axis=1).T  # (I+H, 4H), blocks i, f, g, o
    return _blocks(kernel, TF1_ORDER, axis=1), _blocks(bias, TF1_ORDER, axis=0)


# -- into a module --------------------------------------------------------------------------
def load_layer(module, params: dict, layer: int = 0, direction: int = 0) -> None:
    """Copy single-layer ``params`` (arrays or tensors) into ``module``'s layer and direction,
    checking names and shapes."""
    target = module.layer_params(layer, direction)
    missing, extra = sorted(set(target) - set(params)), sorted(set(params) - set(target))
    if missing or extra:
        raise ValueError(f"parameters do not match layer {layer}: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, value in params.items():
            value = torch.as_tensor(_array(value))
            if tuple(value.shape) != tuple(target[name].shape):
                raise ValueError(f"{name}: expected shape {tuple(target[name].shape)}, got {tuple(value.shape)}")
            target[name].copy_(value)
