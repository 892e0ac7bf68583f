"""Elman RNN: one block, tanh or relu, torch.nn.RNN's layout."""
import numpy as np
import pytest

from gatedrnn.cells import NUMPY_OPS as ops
from gatedrnn.cells import make_cell
from gatedrnn.reference import init_params

I, H = 3, 4


def test_spec():
    spec = {s.name: s.shape for s in make_cell("rnn").param_spec(I, H)}
    assert spec == {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,), "bias_hh": (H,)}


def test_nonlinearity_validated():
    assert make_cell("rnn").nonlinearity == "tanh"
    assert make_cell("rnn", nonlinearity="relu").nonlinearity == "relu"
    with pytest.raises(ValueError, match=r"Unknown nonlinearity 'sigmoid'; expected one of \('tanh', 'relu'\)"):
        make_cell("rnn", nonlinearity="sigmoid")


@pytest.mark.parametrize("nonlinearity, act", [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0))])
def test_step_is_the_elman_update(nonlinearity, act):
    cell = make_cell("rnn", nonlinearity=nonlinearity)
    p = init_params(cell, I, H, rng=0)
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((5, I)), rng.standard_normal((5, H))
    gx, _ = cell.input_proj(ops, p, x)
    (h_new,), _ = cell.step(ops, p, gx, (h,))
    expected = act(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])
    np.testing.assert_allclose(h_new, expected, rtol=1e-12, atol=1e-15)


def test_relu_backward_passes_only_positive_units():
    cell = make_cell("rnn", nonlinearity="relu")
    p = init_params(cell, I, H, rng=0)
    x = np.random.default_rng(2).standard_normal((6, I))
    gx, _ = cell.input_proj(ops, p, x)
    (h,), cache = cell.step(ops, p, gx, (np.zeros((6, H)),))
    da, _ = cell.step_backward(ops, p, cache, (np.ones((6, H)),), {})
    np.testing.assert_array_equal(da, (h > 0).astype(float))
