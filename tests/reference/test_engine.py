import numpy as np
import pytest

from gatedrnn.cells import CELLS, make_cell
from gatedrnn.reference import backward, forward, gradcheck, init_params

CASES = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("lstm", {"forget_bias": 1.0}),
    ("peephole", {}), ("cifg", {}), ("gru", {}),
    *[("mogrifier", {"rounds": r}) for r in range(1, 6)], ("mogrifier", {"rank": 2}),
    ("lstm", {"proj_size": 2}), ("peephole", {"proj_size": 2}), ("cifg", {"proj_size": 2}),
    ("mogrifier", {"proj_size": 2, "rank": 2}),
    ("slstm", {}), ("slstm", {"num_heads": 2}), ("slstm", {"num_heads": 4}), ("mingru", {}), ("minlstm", {}),
    ("indrnn", {}), ("indrnn", {"nonlinearity": "tanh"}),
    *[(c, {"layer_norm": True}) for c in CELLS if "layer_norm" in CELLS[c].options],
    ("lstm", {"drop_gates": ("i",)}), ("lstm", {"drop_gates": ("f", "o")}), ("peephole", {"drop_gates": ("o",)}),
    ("lstm", {"input_activation": "identity"}), ("lstm", {"output_activation": "identity"}),
    *[(c, {"bias": False}) for c in CELLS],
]


def _id(case):
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
@pytest.mark.parametrize("seq_len", [1, 7])
@pytest.mark.parametrize("batch", [1, 3])
def test_backward_matches_finite_differences(case, seq_len, batch):
    cell, options = case
    errors = gradcheck(cell, seq_len=seq_len, batch=batch, **options)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: relative error {errors[worst]:.2e}"


# -- small cases checked by hand ------------------------------------------------------------

LSTM_FAMILY = ["lstm", "peephole", "cifg", "mogrifier"]


def zero_params(cell, input_size, hidden_size, **options):
    return {k: np.zeros_like(v) for k, v in init_params(cell, input_size, hidden_size, rng=0, **options).items()}


def test_zero_weights_lstm_halves_c_each_step():
    # every pre-activation is 0: i = f = o = 1/2, g = 0, so c_t = c_{t-1} / 2 and h_t = tanh(c_t) / 2
    T, B, I, H = 4, 2, 3, 5
    rng = np.random.default_rng(0)
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    for name in ("lstm", "peephole", "mogrifier"):
        y, (h_n, c_n), _ = forward(name, zero_params(name, I, H), x, (h0, c0))
        c = c0 * 0.5 ** np.arange(1, T + 1)[:, None, None]
        np.testing.assert_allclose(y, 0.5 * np.tanh(c), rtol=1e-15, err_msg=name)
        np.testing.assert_allclose(c_n, c0 / 2**T, rtol=1e-15, err_msg=name)


def test_zero_weights_cifg_halves_c_too():
    # CIFG: f = 1/2 and i = 1 - f = 1/2 as well, the same numbers as the LSTM
    T, B, I, H = 3, 2, 3, 4
    rng = np.random.default_rng(1)
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    y, (_, c_n), _ = forward("cifg", zero_params("cifg", I, H), x, (h0, c0))
    np.testing.assert_allclose(c_n, c0 / 2**T, rtol=1e-15)


def test_zero_weights_gru_halves_h():
    # r = z = 1/2, n = tanh(0) = 0: h_t = h_{t-1} / 2
    T, B, I, H = 3, 2, 3, 4
    rng = np.random.default_rng(2)
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    y, h_n, _ = forward("gru", zero_params("gru", I, H), x, h0)
    np.testing.assert_allclose(y, h0 * 0.5 ** np.arange(1, T + 1)[:, None, None], rtol=1e-15)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_zero_weights_rnn_sees_only_its_biases(nonlinearity):
    T, B, I, H = 3, 2, 3, 4
    p = zero_params("rnn", I, H)
    p["bias_ih"] = np.array([0.5, -0.25, 1.0, -2.0])
    p["bias_hh"] = np.array([0.25, 0.0, -0.5, 1.0])
    x = np.random.default_rng(3).standard_normal((T, B, I))
    y, _, _ = forward("rnn", p, x, nonlinearity=nonlinearity)
    a = np.array([0.75, -0.25, 0.5, -1.0])
    expected = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    np.testing.assert_allclose(y, np.broadcast_to(expected, (T, B, H)), rtol=1e-15)


def test_zero_weights_zero_gradients_of_weights_where_no_signal():
    # zero weights and zero state: h stays 0, so dW_hh = sum dgates^T h = 0 exactly
    T, B, I, H = 3, 2, 3, 4
    p = zero_params("lstm", I, H)
    x = np.random.default_rng(4).standard_normal((T, B, I))
    _, _, cache = forward("lstm", p, x)
    grads = backward(cache, np.ones((T, B, H)))
    np.testing.assert_array_equal(grads["weight_hh"], 0.0)
    np.testing.assert_array_equal(grads["x"], 0.0)  # dx = da W_ih, W_ih = 0


@pytest.mark.parametrize("options", [{}, {"proj_size": 2}, {"layer_norm": True}])
def test_mogrifier_zero_rounds_is_exactly_the_lstm(options):
    T, B, I, H = 5, 3, 3, 4
    p = init_params("lstm", I, H, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    R = options.get("proj_size") or H
    state = (rng.standard_normal((B, R)), rng.standard_normal((B, H)))
    y_lstm, (h_lstm, c_lstm), cache_lstm = forward("lstm", p, x, state, **options)
    y_mog, (h_mog, c_mog), cache_mog = forward("mogrifier", p, x, state, rounds=0, **options)
    np.testing.assert_array_equal(y_mog, y_lstm)
    np.testing.assert_array_equal(c_mog, c_lstm)
    dy = rng.standard_normal(y_lstm.shape)
    g_lstm, g_mog = backward(cache_lstm, dy), backward(cache_mog, dy)
    assert g_lstm.keys() == g_mog.keys()
    for k in g_lstm:
        np.testing.assert_array_equal(g_mog[k], g_lstm[k], err_msg=k)


def test_mogrifier_with_zero_q_and_r_is_the_lstm():
    # 2 * sigmoid(0) = 1: every round multiplies by exactly one
    T, B, I, H = 4, 2, 3, 4
    p = init_params("mogrifier", I, H, rng=0, rounds=5)
    p["weight_q"][:] = 0.0
    p["weight_r"][:] = 0.0
    lstm_p = {k: v for k, v in p.items() if k not in ("weight_q", "weight_r")}
    x = np.random.default_rng(1).standard_normal((T, B, I))
    y_mog, _, _ = forward("mogrifier", p, x, rounds=5)
    y_lstm, _, _ = forward("lstm", lstm_p, x)
    # the Mogrifier projects x inside the step, the LSTM once for all steps: rounding may differ
    np.testing.assert_allclose(y_mog, y_lstm, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell", ["lstm", "peephole", "cifg", "mogrifier"])
def test_forget_bias_equals_adding_it_to_the_forget_block(cell):
    T, B, I, H, b = 5, 3, 3, 4, 1.5
    p = init_params(cell, I, H, rng=0)
    k = make_cell(cell).gates.index("f")
    shifted = {**p, "bias_ih": p["bias_ih"].copy()}
    shifted["bias_ih"][k * H : (k + 1) * H] += b
    x = np.random.default_rng(1).standard_normal((T, B, I))
    y_fb, state_fb, cache_fb = forward(cell, p, x, forget_bias=b)
    y_sh, state_sh, cache_sh = forward(cell, shifted, x)
    np.testing.assert_allclose(y_fb, y_sh, rtol=1e-13, atol=1e-15)  # only the order of two sums differs
    np.testing.assert_allclose(state_fb[1], state_sh[1], rtol=1e-13, atol=1e-15)
    dy = np.random.default_rng(2).standard_normal(y_fb.shape)
    g_fb, g_sh = backward(cache_fb, dy), backward(cache_sh, dy)
    for key in g_fb:
        np.testing.assert_allclose(g_fb[key], g_sh[key], rtol=1e-11, atol=1e-14, err_msg=key)


def test_cifg_keeps_c_when_its_forget_gate_saturates():
    # f = sigmoid(a + 100) rounds to exactly 1 in float64, so i = 1 - f = 0 and c_t = c_{t-1}
    T, B, I, H = 6, 3, 3, 4
    p = init_params("cifg", I, H, rng=0)
    rng = np.random.default_rng(1)
    x, h0, c0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    y, (h_n, c_n), cache = forward("cifg", p, x, (h0, c0), forget_bias=100.0)
    np.testing.assert_array_equal(c_n, c0)
    assert all(np.array_equal(step["i"], np.zeros((B, H))) for step in cache.steps)
    # the output still moves: o and h_{t-1} change from step to step
    assert not np.allclose(y[0], y[-1])
    # the gradient reaches c0 unchanged through the constant carousel
    dc = rng.standard_normal((B, H))
    grads = backward(cache, np.zeros_like(y), (np.zeros((B, H)), dc))
    np.testing.assert_array_equal(grads["c0"], dc)


# -- dtypes and the batch --------------------------------------------------------------------

@pytest.mark.parametrize("cell, options", [
    ("rnn", {}), ("gru", {}), ("lstm", {}), ("peephole", {"layer_norm": True}), ("cifg", {"proj_size": 2}),
    ("mogrifier", {"rank": 2}),
])
def test_float32_preserved_and_close_to_float64(cell, options):
    T, B, I, H = 4, 3, 3, 4
    p64 = init_params(cell, I, H, rng=0, **options)
    p32 = init_params(cell, I, H, rng=0, dtype=np.float32, **options)
    assert all(v.dtype == np.float32 for v in p32.values())
    x64 = np.random.default_rng(1).standard_normal((T, B, I))
    x32 = x64.astype(np.float32)
    y32, state32, cache32 = forward(cell, p32, x32, **options)
    y64, _, cache64 = forward(cell, p64, x64, **options)
    assert y32.dtype == np.float32
    for s in (state32 if isinstance(state32, tuple) else (state32,)):
        assert s.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    dy = np.random.default_rng(2).standard_normal(y64.shape)
    g32, g64 = backward(cache32, dy.astype(np.float32)), backward(cache64, dy)
    for k in g64:
        assert g32[k].dtype == np.float32, k
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("cell, options", [
    ("rnn", {}), ("gru", {"layer_norm": True}), ("lstm", {"proj_size": 2}), ("peephole", {}),
    ("cifg", {"layer_norm": True}), ("mogrifier", {}),
])
def test_a_batch_is_its_rows_run_alone(cell, options):
    T, B, I, H = 4, 3, 3, 4
    p = init_params(cell, I, H, rng=0, **options)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    sizes = make_cell(cell, **options).state_sizes(H)
    state = tuple(rng.standard_normal((B, s)) for s in sizes)
    public = state if len(state) == 2 else state[0]
    y, _, cache = forward(cell, p, x, public, **options)
    dy = rng.standard_normal(y.shape)
    grads = backward(cache, dy)
    summed = {k: np.zeros_like(v) for k, v in p.items()}
    for b in range(B):
        row_state = tuple(s[b : b + 1] for s in state)
        y_b, _, cache_b = forward(cell, p, x[:, b : b + 1], row_state if len(state) == 2 else row_state[0], **options)
        np.testing.assert_allclose(y_b[:, 0], y[:, b], rtol=1e-12, atol=1e-14)
        g_b = backward(cache_b, dy[:, b : b + 1])
        np.testing.assert_allclose(g_b["x"][:, 0], grads["x"][:, b], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(g_b["h0"][0], grads["h0"][b], rtol=1e-10, atol=1e-13)
        for k in summed:
            summed[k] += g_b[k]
    for k in summed:  # parameter gradients are sums over the batch
        np.testing.assert_allclose(summed[k], grads[k], rtol=1e-10, atol=1e-13, err_msg=k)


# -- zoneout ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["gru", "lstm", "peephole"])
def test_zoneout_all_ones_keeps_the_initial_state(cell):
    T, B, I, H = 5, 2, 3, 4
    p = init_params(cell, I, H, rng=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I))
    sizes = make_cell(cell).state_sizes(H)
    state = tuple(rng.standard_normal((B, s)) for s in sizes)
    masks = tuple(np.ones((T, B, s)) for s in sizes)
    y, state_n, cache = forward(cell, p, x, state if len(state) == 2 else state[0], keep=masks)
    np.testing.assert_array_equal(y, np.broadcast_to(state[0], y.shape))
    state_n = state_n if isinstance(state_n, tuple) else (state_n,)
    for s, s0 in zip(state_n, state):
        np.testing.assert_array_equal(s, s0)
    # every step is bypassed: no gradient reaches the parameters, all of it reaches h0
    grads = backward(cache, np.ones_like(y))
    np.testing.assert_array_equal(grads["weight_hh"], 0.0)
    np.testing.assert_array_equal(grads["h0"], float(T))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "mogrifier"])
def test_zoneout_all_zeros_is_no_zoneout(cell):
    T, B, I, H = 5, 2, 3, 4
    p = init_params(cell, I, H, rng=0)
    x = np.random.default_rng(1).standard_normal((T, B, I))
    sizes = make_cell(cell).state_sizes(H)
    y0, _, c0 = forward(cell, p, x, keep=tuple(np.zeros((T, B, s)) for s in sizes))
    y, _, c = forward(cell, p, x)
    np.testing.assert_array_equal(y0, y)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    g0, g = backward(c0, dy), backward(c, dy)
    for k in g:
        np.testing.assert_array_equal(g0[k], g[k], err_msg=k)


@pytest.mark.parametrize("cell, options", [("gru", {}), ("lstm", {"proj_size": 2}), ("peephole", {"layer_norm": True})])
def test_zoneout_backward_matches_finite_differences(cell, options):
    errors = gradcheck(cell, seq_len=6, batch=2, zoneout=0.5, **options)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: relative error {errors[worst]:.2e}"


# -- the gradient check catches a wrong backward ---------------------------------------------

@pytest.mark.parametrize("key", ["weight_hh", "bias_ih", "x", "c0"])
def test_gradcheck_catches_a_wrong_backward(key):
    def wrong_backward(cache, dy, d_state=None):
        grads = backward(cache, dy, d_state)
        flat = grads[key].reshape(-1)
        flat[0] += 1e-3 * (1.0 + abs(flat[0]))  # one entry slightly off
        return grads

    errors = gradcheck("lstm", seq_len=3, batch=2, backward_fn=wrong_backward)
    assert errors[key] > 1e-5
    assert all(err < 1e-6 for k, err in errors.items() if k != key)


def test_gradcheck_catches_a_dropped_term():
    # the forget gate's gradient without its c_{t-1} factor: a classic slip in a hand derivation
    from gatedrnn.cells.lstm import LSTMMath as LSTM

    class Slipped(LSTM):
        def step_backward(self, ops, p, cache, dstate, grads):
            cache = {**cache, "c_prev": np.ones_like(cache["c_prev"])}
            return super().step_backward(ops, p, cache, dstate, grads)

    def slipped_backward(cache, dy, d_state=None):
        cache.cell = Slipped()
        return backward(cache, dy, d_state)

    errors = gradcheck("lstm", seq_len=3, batch=2, backward_fn=slipped_backward)
    assert max(errors.values()) > 1e-3


def test_zoneout_masks_follow_the_dtype_of_x():
    T, B, I, H = 3, 2, 3, 4
    p = init_params("lstm", I, H, rng=0, dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    masks = tuple(np.full((T, B, H), 0.25) for _ in range(2))  # float64, the expectation at p = 0.25
    y, (h, c), cache = forward("lstm", p, x, keep=masks)
    assert y.dtype == h.dtype == c.dtype == np.float32
    grads = backward(cache, np.ones_like(y))
    assert all(g.dtype == np.float32 for g in grads.values())


def test_zoneout_mask_shapes_are_checked():
    p = init_params("lstm", 3, 4, rng=0, proj_size=2)
    x = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"keep needs 2 mask\(s\), one per state element, got 1"):
        forward("lstm", p, x, keep=(np.zeros((5, 2, 2)),), proj_size=2)
    with pytest.raises(ValueError, match=r"keep mask for h must be \(5, 2, 2\), got \(5, 2, 4\)"):
        forward("lstm", p, x, keep=(np.zeros((5, 2, 4)), np.zeros((5, 2, 4))), proj_size=2)


def test_old_mask_names_still_work_with_a_deprecation_warning():
    """``zoneout=`` and ``state_mask=`` (before 0.2) are ``keep=`` and ``mask_hh=``: the same
    result, with a DeprecationWarning; both names at once is an error."""
    rng = np.random.default_rng(0)
    p = init_params("lstm", 3, 4, rng=rng)
    x = rng.normal(size=(5, 2, 3))
    keep = tuple((rng.random((5, 2, 4)) < 0.3).astype(np.float64) for _ in range(2))
    mask = np.full((2, 4), 2.0)
    y_new, _, _ = forward("lstm", p, x, keep=keep, mask_hh=mask)
    with pytest.warns(DeprecationWarning, match="zoneout=.*keep="):
        y_old, _, _ = forward("lstm", p, x, zoneout=keep, mask_hh=mask)
    np.testing.assert_array_equal(y_old, y_new)
    with pytest.warns(DeprecationWarning, match="state_mask=.*mask_hh="):
        y_old, _, _ = forward("lstm", p, x, keep=keep, state_mask=mask)
    np.testing.assert_array_equal(y_old, y_new)
    with pytest.raises(TypeError, match="not both"):
        forward("lstm", p, x, keep=keep, zoneout=keep)
