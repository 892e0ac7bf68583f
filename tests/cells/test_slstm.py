"""The sLSTM cell in the NumPy reference: layout of the heads, the stabiliser's symmetry, the
fresh-state rule, bad options; its backward against finite differences is in
tests/reference/test_engine.py (``gradcheck``), here also from the zero state."""
import numpy as np
import pytest

from gatedrnn.cells import NUMPY_OPS, make_cell
from gatedrnn.cells.slstm import heads_product, heads_product_backward
from gatedrnn.reference import backward, forward, gradcheck, init_params
from gatedrnn.reference.gradcheck import numerical_gradient, relative_error


@pytest.mark.parametrize("num_heads", [1, 2, 3])
def test_heads_product_is_the_block_diagonal_matrix(num_heads):
    B, H = 2, 6
    DH = H // num_heads
    rng = np.random.default_rng(0)
    h, w = rng.standard_normal((B, H)), rng.standard_normal((4 * H, DH))
    full = np.zeros((4 * H, H))  # the dense (4H, H) matrix the heads stand for
    for g in range(4):
        for n in range(num_heads):
            rows = slice(g * H + n * DH, g * H + (n + 1) * DH)
            full[rows, n * DH : (n + 1) * DH] = w[rows]
    np.testing.assert_allclose(heads_product(h, w, num_heads), h @ full.T, rtol=1e-13)
    da = rng.standard_normal((B, 4 * H))
    dh, dw = heads_product_backward(da, h, w, num_heads)
    np.testing.assert_allclose(dh, da @ full, rtol=1e-13)
    dfull = da.T @ h
    for g in range(4):
        for n in range(num_heads):
            rows = slice(g * H + n * DH, g * H + (n + 1) * DH)
            np.testing.assert_allclose(dw[rows], dfull[rows, n * DH : (n + 1) * DH], rtol=1e-13)


def test_one_head_is_the_lstm_layout():
    spec = {s.name: s.shape for s in make_cell("slstm").param_spec(3, 8)}
    assert spec == {"weight_ih": (32, 3), "weight_hh": (32, 8), "bias_ih": (32,), "bias_hh": (32,)}
    spec = {s.name: s.shape for s in make_cell("slstm", num_heads=4).param_spec(3, 8)}
    assert spec["weight_hh"] == (32, 2)
    assert make_cell("slstm").state_names == ("h", "c", "n", "m")


def _state(rng, B=3, H=4):
    return tuple(make_cell("slstm").sample_state(rng, B, H))


def test_outputs_do_not_see_the_stabiliser_scale():
    # (c, n, m) -> (c e^-s, n e^-s, m + s) is the same state: same outputs, and the final state
    # moves along the same direction
    rng = np.random.default_rng(1)
    p = init_params("slstm", 3, 4, rng, num_heads=2)
    x = rng.standard_normal((6, 3, 3))
    h0, c0, n0, m0 = _state(rng)
    s = rng.standard_normal((3, 4)) * 3
    y, (_, c, n, m), _ = forward("slstm", p, x, (h0, c0, n0, m0), num_heads=2)
    y2, (_, c2, n2, m2), _ = forward("slstm", p, x, (h0, c0 * np.exp(-s), n0 * np.exp(-s), m0 + s), num_heads=2)
    np.testing.assert_allclose(y2, y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c2 * np.exp(m2), c * np.exp(m), rtol=1e-12)
    np.testing.assert_allclose(n2 * np.exp(m2), n * np.exp(m), rtol=1e-12)


def test_fresh_state_ignores_m0():
    # from c0 = n0 = 0 the first m is a_i whatever m0 says, and i' = 1: the outputs do not see m0
    rng = np.random.default_rng(2)
    p = init_params("slstm", 3, 4, rng)
    x = rng.standard_normal((5, 2, 3))
    zero = np.zeros((2, 4))
    y0, state0, _ = forward("slstm", p, x)
    for m0 in (-5.0, 30.0):
        y1, state1, _ = forward("slstm", p, x, (zero, zero, zero, np.full((2, 4), m0)))
        np.testing.assert_allclose(y1, y0, rtol=1e-13)
        for a, b in zip(state1, state0):
            np.testing.assert_allclose(a, b, rtol=1e-13)
    assert np.all(state0[2] >= 1.0 - 1e-12)  # n_t >= min(1, n_{t-1}), and n_1 = f' 0 + 1


def test_fresh_rule_is_per_row():
    # a batch with one fresh row and one carried row equals each row run alone
    rng = np.random.default_rng(3)
    p = init_params("slstm", 3, 4, rng)
    x = rng.standard_normal((4, 2, 3))
    h0, c0, n0, m0 = _state(rng, B=2)
    h0[0] = c0[0] = n0[0] = 0.0
    y, _, _ = forward("slstm", p, x, (h0, c0, n0, m0))
    for b in range(2):
        yb, _, _ = forward("slstm", p, x[:, b : b + 1], (h0[b : b + 1], c0[b : b + 1], n0[b : b + 1], m0[b : b + 1]))
        np.testing.assert_allclose(y[:, b : b + 1], yb, rtol=1e-13)


def test_backward_from_the_zero_state_matches_finite_differences():
    # the fresh-state branch at step 1, the max rule after it; the loss on the outputs only
    rng = np.random.default_rng(4)
    p = init_params("slstm", 3, 4, rng, num_heads=2)
    x = rng.standard_normal((5, 2, 3))
    dy = rng.standard_normal((5, 2, 4))

    def loss():
        return float((forward("slstm", p, x, num_heads=2)[0] * dy).sum())

    _, _, cache = forward("slstm", p, x, num_heads=2)
    grads = backward(cache, dy)
    for key, a in {**p, "x": x}.items():
        assert relative_error(grads[key], numerical_gradient(loss, a, 1e-6)) < 1e-7, key


def test_a_cotangent_on_the_scale_is_what_m_does_not_carry():
    # gradcheck projects d_state onto what the outputs can see (dm = c dc + n dn); without that
    # projection finite differences also measure the scale, which m deliberately does not carry
    cell = make_cell("slstm")
    assert max(gradcheck(cell).values()) < 1e-6

    class Raw(type(cell)):
        def invariant_dstate(self, state, d_state):
            return d_state

    errors = gradcheck(Raw())
    assert errors["weight_ih"] > 1e-3 and errors["m0"] > 1e-3


def test_num_heads_must_divide_hidden_size():
    with pytest.raises(ValueError, match="num_heads must divide hidden_size, got num_heads=3 and hidden_size=4"):
        init_params("slstm", 2, 4, num_heads=3)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_heads must be a positive integer"):
            make_cell("slstm", num_heads=bad)


def test_state_must_be_a_four_tuple():
    p = init_params("slstm", 2, 4, rng=0)
    x = np.zeros((3, 1, 2))
    with pytest.raises(ValueError, match=r"cell 'slstm' takes its state as a tuple \(h, c, n, m\), got 2 element"):
        forward("slstm", p, x, (np.zeros((1, 4)), np.zeros((1, 4))))
    with pytest.raises(ValueError, match=r"n0 must be \(1, 4\), got \(1, 3\)"):
        forward("slstm", p, x, (np.zeros((1, 4)), np.zeros((1, 4)), np.zeros((1, 3)), np.zeros((1, 4))))


def test_zoneout_is_refused_padding_is_not():
    p = init_params("slstm", 2, 4, rng=0)
    x = np.random.default_rng(0).standard_normal((3, 2, 2))
    masks = [np.ones((3, 2, 4)) for _ in range(4)]
    masks[1] = np.zeros((3, 2, 4))
    with pytest.raises(ValueError, match="cell 'slstm' keeps its state whole: keep masks must be 0 or 1 and the same"):
        forward("slstm", p, x, keep=masks)
    with pytest.raises(ValueError, match="keeps its state whole"):
        forward("slstm", p, x, keep=[np.full((3, 2, 4), 0.3)] * 4)
    pad = np.zeros((3, 2, 4))
    pad[2:, 1] = 1.0  # row 1 ends after two steps: its state is carried through the last
    y, state, _ = forward("slstm", p, x, keep=[pad] * 4)
    y2, state2, _ = forward("slstm", p, x[:2, 1:])
    for a, b in zip(state, state2):
        np.testing.assert_allclose(a[1:], b, rtol=1e-13)


def test_float32_stays_float32():
    p = init_params("slstm", 2, 4, rng=0, dtype=np.float32)
    y, state, cache = forward("slstm", p, np.ones((3, 2, 2), dtype=np.float32))
    assert y.dtype == np.float32 and all(s.dtype == np.float32 for s in state)
    assert all(g.dtype == np.float32 for g in backward(cache, np.ones_like(y)).values())
    assert NUMPY_OPS.log_sigmoid(np.float32(-1000.0)) == np.float32(-1000.0)  # no overflow in exp
