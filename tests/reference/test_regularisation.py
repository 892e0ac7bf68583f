"""Variational dropout of the recurrent state in the NumPy reference: the hand-derived backward
against finite differences, alone and with zoneout, and what the mask does to the forward."""
import numpy as np
import pytest

from gatedrnn.cells import CELLS
from gatedrnn.reference import backward, forward, gradcheck, init_params

CASES = [  # the cells with a recurrent product for the mask to act on
    *[(c, {}) for c in CELLS if CELLS[c].has_recurrent_product],
    *[(c, {"layer_norm": True}) for c in CELLS if CELLS[c].has_recurrent_product and "layer_norm" in CELLS[c].options],
    ("lstm", {"proj_size": 2}), ("mogrifier", {"rounds": 3, "proj_size": 2}),
    ("peephole", {"drop_gates": ("f",)}), ("lstm", {"output_activation": "identity"}),
]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
@pytest.mark.parametrize("zoneout", [None, 0.4])
def test_state_dropout_backward_matches_finite_differences(case, zoneout):
    cell, options = case
    if zoneout and not CELLS[cell].supports_zoneout:
        pytest.skip(f"zoneout is not defined for {cell}")
    errors = gradcheck(cell, seq_len=4, batch=3, dropout_state=0.5, zoneout=zoneout, **options)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: relative error {errors[worst]:.2e}"


def test_state_mask_of_ones_changes_nothing():
    rng = np.random.default_rng(0)
    params = init_params("gru", 3, 4, rng)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4))
    y, _, _ = forward("gru", params, x, h0)
    y_masked, _, _ = forward("gru", params, x, h0, mask_hh=np.ones((2, 4)))
    np.testing.assert_array_equal(y_masked, y)


def test_zero_state_mask_cuts_the_recurrent_product_only():
    # rnn: with h masked to 0 before W_hh, h_t = tanh(x_t W_ih^T + b_ih + b_hh) at every step
    rng = np.random.default_rng(1)
    params = init_params("rnn", 3, 4, rng)
    x, h0 = rng.standard_normal((5, 2, 3)), rng.standard_normal((2, 4))
    y, _, _ = forward("rnn", params, x, h0, mask_hh=np.zeros((2, 4)))
    expected = np.tanh(x @ params["weight_ih"].T + params["bias_ih"] + params["bias_hh"])
    np.testing.assert_allclose(y, expected, rtol=1e-14)
    # gru: the carry z * h_{t-1} still sees the unmasked state, so h0 still matters
    params = init_params("gru", 3, 4, rng)
    y_a, _, _ = forward("gru", params, x, h0, mask_hh=np.zeros((2, 4)))
    y_b, _, _ = forward("gru", params, x, 2 * h0, mask_hh=np.zeros((2, 4)))
    assert not np.allclose(y_a[0], y_b[0])


def test_state_mask_gradients_exclude_the_mask():
    rng = np.random.default_rng(2)
    params = init_params("lstm", 3, 4, rng)
    x = rng.standard_normal((3, 2, 3))
    y, _, cache = forward("lstm", params, x, mask_hh=np.full((2, 4), 2.0))
    grads = backward(cache, np.ones_like(y))
    assert set(grads) == set(params) | {"x", "h0", "c0"}


def test_state_mask_shape_is_checked():
    params = init_params("lstm", 3, 4, rng=0, proj_size=2)
    with pytest.raises(ValueError, match=r"mask_hh must be \(2, 2\), got \(2, 4\)"):
        forward("lstm", params, np.zeros((3, 2, 3)), mask_hh=np.ones((2, 4)), proj_size=2)


def test_gradcheck_catches_a_backward_that_ignores_the_mask():
    # negative test: a backward run without the mask must fail the check
    def backward_without_mask(cache, dy, d_state=None):
        cache.params = {k: v for k, v in cache.params.items() if k != "mask_hh"}
        return backward(cache, dy, d_state)

    errors = gradcheck("lstm", dropout_state=0.5, backward_fn=backward_without_mask)
    assert max(errors.values()) > 1e-3, errors


def test_state_mask_keeps_a_float32_run_in_float32():
    params = init_params("lstm", 3, 4, rng=0, dtype=np.float32)
    x = np.zeros((3, 2, 3), dtype=np.float32)
    y, _, cache = forward("lstm", params, x, mask_hh=np.full((2, 4), 2.0))
    assert y.dtype == np.float32
    assert all(g.dtype == np.float32 for g in backward(cache, np.ones_like(y)).values())
