"""minLSTM: the step against its equations, and its normalised gates where both underflow."""
import numpy as np

from gatedrnn.cells import make_cell
from gatedrnn.reference import backward, forward, init_params


def test_step_is_the_equations():
    rng = np.random.default_rng(0)
    T, B, I, H = 5, 3, 2, 4
    p = init_params("minlstm", I, H, rng)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    y, h_n, _ = forward("minlstm", p, x, h0)
    h = h0
    for t in range(T):
        a = x[t] @ p["weight_ih"].T + p["bias_ih"]
        f, i = 1 / (1 + np.exp(-a[:, :H])), 1 / (1 + np.exp(-a[:, H : 2 * H]))
        a_h = a[:, 2 * H :]
        ht = np.where(a_h >= 0, a_h + 0.5, 1 / (1 + np.exp(-a_h)))
        h = f / (f + i) * h + i / (f + i) * ht
        np.testing.assert_allclose(y[t], h, rtol=1e-13)
    np.testing.assert_array_equal(h_n, y[-1])


def test_gates_that_both_underflow_stay_finite():
    # sigma(-800) is 0 in float64: f / (f + i) would be 0 / 0; through log sigma it is sigma(a_i - a_f)
    p = {"weight_ih": np.zeros((3, 1)), "bias_ih": np.array([-800.0, -801.0, 1.0])}
    y, _, cache = forward("minlstm", p, np.zeros((2, 1, 1)), np.ones((1, 1)))
    fn = 1 / (1 + np.exp(-1.0))  # f / (f + i) = e^-800 / (e^-800 + e^-801)
    np.testing.assert_allclose(y[0], fn * 1.0 + (1 - fn) * 1.5, rtol=1e-12)
    grads = backward(cache, np.ones_like(y))
    assert all(np.isfinite(v).all() for v in grads.values())


def test_layout():
    assert {s.name: s.shape for s in make_cell("minlstm").param_spec(3, 5)} == {"weight_ih": (15, 3), "bias_ih": (15,)}
