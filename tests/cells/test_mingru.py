"""minGRU and its ``g``: the step against its equations, the layout, what it refuses."""
import numpy as np
import pytest

from gatedrnn.cells import NUMPY_OPS as ops
from gatedrnn.cells import make_cell
from gatedrnn.cells.mingru import g, g_grad
from gatedrnn.reference import forward, init_params


def test_g_is_continuous_positive_and_its_derivative_reads_its_output():
    v = np.linspace(-8, 8, 401)
    y = g(ops, v)
    assert np.all(y > 0)
    np.testing.assert_allclose(g(ops, np.array([-1e-12, 0.0])), [0.5, 0.5], atol=1e-12)
    eps = 1e-6
    numeric = (g(ops, v + eps) - g(ops, v - eps)) / (2 * eps)
    away = np.abs(v) > 1e-3  # the kink at 0: slope 1/4 from the left, 1 from the right
    np.testing.assert_allclose(g_grad(ops, y)[away], numeric[away], rtol=1e-6)


def test_step_is_the_equations():
    rng = np.random.default_rng(0)
    T, B, I, H = 5, 3, 2, 4
    p = init_params("mingru", I, H, rng)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    y, h_n, _ = forward("mingru", p, x, h0)
    h = h0
    for t in range(T):
        a = x[t] @ p["weight_ih"].T + p["bias_ih"]
        z = 1 / (1 + np.exp(-a[:, :H]))
        a_h = a[:, H:]
        ht = np.where(a_h >= 0, a_h + 0.5, 1 / (1 + np.exp(-a_h)))
        h = (1 - z) * h + z * ht
        np.testing.assert_allclose(y[t], h, rtol=1e-13)
    np.testing.assert_array_equal(h_n, y[-1])


def test_layout_has_no_recurrent_weight():
    spec = {s.name: s.shape for s in make_cell("mingru").param_spec(3, 5)}
    assert spec == {"weight_ih": (10, 3), "bias_ih": (10,)}
    assert {s.name for s in make_cell("mingru", bias=False).param_spec(3, 5)} == {"weight_ih"}
    assert not make_cell("mingru").has_recurrent_product


def test_state_dropout_is_refused():
    p = init_params("mingru", 2, 3, rng=0)
    with pytest.raises(ValueError, match="cell 'mingru' has none"):
        forward("mingru", p, np.zeros((2, 1, 2)), mask_hh=np.ones((1, 3)))
