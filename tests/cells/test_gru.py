"""GRU: torch.nn.GRU's layout (blocks r, z, n) and its placement of the reset gate."""
import numpy as np
import pytest

from gatedrnn.cells import NUMPY_OPS as ops
from gatedrnn.cells import make_cell
from gatedrnn.reference import init_params

I, H = 3, 4


def test_spec():
    spec = {s.name: s.shape for s in make_cell("gru").param_spec(I, H)}
    assert spec == {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H), "bias_ih": (3 * H,), "bias_hh": (3 * H,)}
    assert make_cell("gru").num_gates == 3


@pytest.mark.parametrize("option", ["proj_size", "forget_bias", "drop_gates", "nonlinearity", "zoneout"])
def test_lstm_and_rnn_options_are_refused(option):
    with pytest.raises(ValueError, match=rf"cell 'gru' got unknown option\(s\) \['{option}'\]"):
        make_cell("gru", **{option: 1})


def test_reset_gate_scales_the_recurrent_term_with_its_bias():
    # torch.nn.GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); b_hn sits inside the product
    cell = make_cell("gru")
    p = init_params(cell, I, H, rng=0)
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((2, I)), rng.standard_normal((2, H))
    gx, _ = cell.input_proj(ops, p, x)
    (h_new,), cache = cell.step(ops, p, gx, (h,))
    W_ir, W_iz, W_in = np.split(p["weight_ih"], 3)
    W_hr, W_hz, W_hn = np.split(p["weight_hh"], 3)
    b_ir, b_iz, b_in = np.split(p["bias_ih"], 3)
    b_hr, b_hz, b_hn = np.split(p["bias_hh"], 3)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    r = sig(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = sig(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = np.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    np.testing.assert_allclose(h_new, (1 - z) * n + z * h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cache["r"], r, rtol=1e-12)
    np.testing.assert_allclose(cache["z"], z, rtol=1e-12)
