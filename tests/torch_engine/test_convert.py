"""Weight converters: the documented equations of Keras's ``LSTM`` and TensorFlow 1's
``BasicLSTMCell``, written here in NumPy, run on the converted weights and compared to our module.

Float64, I=3, H=4, T=5, B=2.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn import convert

I, H, T, B = 3, 4, 5, 2
F64 = torch.float64
ENGINES = ("fused", "autograd", "auto")
TOL = dict(rtol=1e-10, atol=1e-12)  # float64, same equations in another layout


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def keras_lstm(x, kernel, recurrent_kernel, bias, h, c):
    """Keras ``LSTM`` (``activation="tanh"``, ``recurrent_activation="sigmoid"``), time-major ``x``."""
    ys = []
    for x_t in x:
        z = x_t @ kernel + h @ recurrent_kernel + (0.0 if bias is None else bias)
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=1)
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o)
        c = f * c + i * np.tanh(z_c)
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys), h, c


def tf1_basic_lstm(x, kernel, bias, forget_bias, c, h):
    """TF1 ``BasicLSTMCell.call`` over time-major ``x``; its state tuple is ``(c, h)``."""
    ys = []
    for x_t in x:
        gate_inputs = np.concatenate([x_t, h], axis=1) @ kernel + bias
        i, j, f, o = np.split(gate_inputs, 4, axis=1)
        c = c * sigmoid(f + forget_bias) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
        ys.append(h)
    return np.stack(ys), c, h


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, I)), 0.5 * rng.standard_normal((B, H)), 0.5 * rng.standard_normal((B, H)), rng


def _run(module, x, h, c):
    with torch.no_grad():
        y, (h_n, c_n) = module(torch.from_numpy(x), (torch.from_numpy(h)[None], torch.from_numpy(c)[None]))
    return y.numpy(), h_n[0].numpy(), c_n[0].numpy()


def _random_module(rng, engine, **options):
    module = gatedrnn.LSTM(I, H, engine=engine, dtype=F64, **options)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, p.shape)))
    return module


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_from_keras_computes_what_keras_computes(engine, use_bias):
    x, h, c, rng = _data()
    kernel, recurrent = rng.standard_normal((I, 4 * H)) * 0.5, rng.standard_normal((H, 4 * H)) * 0.5
    bias = rng.standard_normal(4 * H) * 0.5 if use_bias else None
    module = gatedrnn.LSTM(I, H, bias=use_bias, engine=engine, dtype=F64)
    convert.load_layer(module, convert.from_keras_lstm(kernel, recurrent, bias))
    y, h_n, c_n = _run(module, x, h, c)
    y_k, h_k, c_k = keras_lstm(x, kernel, recurrent, bias, h, c)
    np.testing.assert_allclose(y, y_k, **TOL)
    np.testing.assert_allclose(h_n, h_k, **TOL)
    np.testing.assert_allclose(c_n, c_k, **TOL)


@pytest.mark.parametrize("engine", ENGINES)
def test_to_keras_computes_what_the_module_computes(engine):
    x, h, c, rng = _data(1)
    module = _random_module(rng, engine)  # bias_hh nonzero: Keras gets the sum
    kernel, recurrent, bias = convert.to_keras_lstm(module.layer_params(0))
    assert kernel.shape == (I, 4 * H) and recurrent.shape == (H, 4 * H) and bias.shape == (4 * H,)
    y_k, h_k, c_k = keras_lstm(x, kernel, recurrent, bias, h, c)
    y, h_n, c_n = _run(module, x, h, c)
    np.testing.assert_allclose(y_k, y, **TOL)
    np.testing.assert_allclose(h_k, h_n, **TOL)
    np.testing.assert_allclose(c_k, c_n, **TOL)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("forget_bias", [1.0, 0.25])
def test_from_tf1_computes_what_basic_lstm_cell_computes(engine, forget_bias):
    x, h, c, rng = _data(2)
    kernel, bias = rng.standard_normal((I + H, 4 * H)) * 0.5, rng.standard_normal(4 * H) * 0.5
    params, options = convert.from_tf1_basic_lstm(kernel, bias, forget_bias=forget_bias)
    assert options == {"forget_bias": forget_bias}  # carried as the option, not folded into the bias
    module = gatedrnn.LSTM(I, H, engine=engine, dtype=F64, **options)
    convert.load_layer(module, params)
    y, h_n, c_n = _run(module, x, h, c)
    y_tf, c_tf, h_tf = tf1_basic_lstm(x, kernel, bias, forget_bias, c, h)
    np.testing.assert_allclose(y, y_tf, **TOL)
    np.testing.assert_allclose(h_n, h_tf, **TOL)
    np.testing.assert_allclose(c_n, c_tf, **TOL)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("ours, theirs", [(0.0, 1.0), (0.3, 1.0), (1.0, 1.0), (0.5, 0.0)])
def test_to_tf1_folds_the_difference_of_forget_biases(engine, ours, theirs):
    x, h, c, rng = _data(3)
    module = _random_module(rng, engine, forget_bias=ours)
    kernel, bias = convert.to_tf1_basic_lstm(module.layer_params(0), forget_bias=ours, tf_forget_bias=theirs)
    assert kernel.shape == (I + H, 4 * H) and bias.shape == (4 * H,)
    y_tf, c_tf, h_tf = tf1_basic_lstm(x, kernel, bias, theirs, c, h)
    y, h_n, c_n = _run(module, x, h, c)
    np.testing.assert_allclose(y_tf, y, **TOL)
    np.testing.assert_allclose(h_tf, h_n, **TOL)
    np.testing.assert_allclose(c_tf, c_n, **TOL)


def test_round_trips_are_exact():
    rng = np.random.default_rng(4)
    kernel, recurrent, bias = rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 4 * H)), rng.standard_normal(4 * H)
    back = convert.to_keras_lstm(convert.from_keras_lstm(kernel, recurrent, bias))
    for a, b in zip(back, (kernel, recurrent, bias)):
        np.testing.assert_array_equal(a, b)
    tf_kernel, tf_bias = rng.standard_normal((I + H, 4 * H)), rng.standard_normal(4 * H)
    params, options = convert.from_tf1_basic_lstm(tf_kernel, tf_bias)
    k2, b2 = convert.to_tf1_basic_lstm(params, tf_forget_bias=options["forget_bias"], **options)
    np.testing.assert_array_equal(k2, tf_kernel)
    np.testing.assert_array_equal(b2, tf_bias)


def test_load_layer_targets_one_layer_and_direction():
    module = gatedrnn.LSTM(I, H, num_layers=2, bidirectional=True, dtype=F64)
    rng = np.random.default_rng(5)
    params = convert.from_keras_lstm(rng.standard_normal((2 * H, 4 * H)), rng.standard_normal((H, 4 * H)),
                                     rng.standard_normal(4 * H))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    convert.load_layer(module, params, layer=1, direction=1)
    for name, value in module.state_dict().items():
        if name.endswith("_l1_reverse"):
            np.testing.assert_array_equal(value.numpy(), params[name.removesuffix("_l1_reverse")])
        else:
            assert torch.equal(value, before[name]), name


def test_bad_layouts_say_expected_and_got():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"recurrent_kernel must have shape \(4, 16\), got \(4, 12\)"):
        convert.from_keras_lstm(rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 3 * H)))
    with pytest.raises(ValueError, match=r"bias must have shape \(16,\), got \(8,\)"):
        convert.from_keras_lstm(rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 4 * H)), np.zeros(8))
    with pytest.raises(ValueError, match=r"\(I\+H, 4H\)"):
        convert.from_tf1_basic_lstm(rng.standard_normal((I + H, 4 * H + 1)), np.zeros(4 * H))
    with pytest.raises(ValueError, match="extra parameters.*weight_peephole"):
        convert.to_keras_lstm(gatedrnn.PeepholeLSTM(I, H).layer_params(0))
    with pytest.raises(ValueError, match="missing.*bias_ih"):
        convert.load_layer(gatedrnn.LSTM(I, H), convert.from_keras_lstm(np.zeros((I, 4 * H)), np.zeros((H, 4 * H))))
    with pytest.raises(ValueError, match=r"weight_ih: expected shape \(16, 3\), got \(16, 5\)"):
        convert.load_layer(gatedrnn.LSTM(I, H), convert.from_keras_lstm(np.zeros((5, 4 * H)), np.zeros((H, 4 * H)),
                                                                         np.zeros(4 * H)))
