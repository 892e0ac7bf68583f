"""IndRNN: the step against its equations, the layout, bad options."""
import numpy as np
import pytest

from gatedrnn.cells import make_cell
from gatedrnn.reference import forward, init_params


@pytest.mark.parametrize("nonlinearity", ["relu", "tanh"])
def test_step_is_the_equations(nonlinearity):
    rng = np.random.default_rng(0)
    T, B, I, H = 5, 3, 2, 4
    p = init_params("indrnn", I, H, rng, nonlinearity=nonlinearity)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    y, _, _ = forward("indrnn", p, x, h0, nonlinearity=nonlinearity)
    act = np.tanh if nonlinearity == "tanh" else (lambda a: np.maximum(a, 0))
    h = h0
    for t in range(T):
        h = act(x[t] @ p["weight_ih"].T + p["bias_ih"] + p["weight_hh"] * h + p["bias_hh"])
        np.testing.assert_allclose(y[t], h, rtol=1e-13)


def test_units_are_independent():
    # unit j of h_t reads h_{t-1} only through unit j: changing h0's other units changes nothing in it
    rng = np.random.default_rng(1)
    p = init_params("indrnn", 2, 4, rng)
    x, h0 = rng.standard_normal((3, 1, 2)), rng.standard_normal((1, 4))
    h1 = h0.copy()
    h1[0, 1:] += 1.0
    y0, _, _ = forward("indrnn", p, x, h0)
    y1, _, _ = forward("indrnn", p, x, h1)
    np.testing.assert_array_equal(y0[..., 0], y1[..., 0])


def test_layout_and_options():
    assert {s.name: s.shape for s in make_cell("indrnn").param_spec(3, 5)} == {
        "weight_ih": (5, 3), "weight_hh": (5,), "bias_ih": (5,), "bias_hh": (5,)}
    assert make_cell("indrnn").nonlinearity == "relu"
    with pytest.raises(ValueError, match=r"Unknown nonlinearity 'sigmoid'; expected one of \('relu', 'tanh'\)"):
        make_cell("indrnn", nonlinearity="sigmoid")
