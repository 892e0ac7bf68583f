"""The modern cells (slstm, mingru, minlstm, indrnn) in every engine against an autograd loop
written here from the equations (float64: outputs, final states and every gradient, from a given
initial state and from none), and against their own peers on the same weights: ``xlstm``'s
vanilla sLSTM loop and ``minGRU-pytorch``."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gatedrnn.cells import CELLS, make_cell
from gatedrnn.reference import backward, forward
from gatedrnn.torch_engine.functional import run_layer

MODERN = [("slstm", {}), ("slstm", {"num_heads": 2}), ("slstm", {"num_heads": 3, "bias": False}),
          ("mingru", {}), ("mingru", {"bias": False}), ("minlstm", {}), ("minlstm", {"bias": False}),
          ("indrnn", {}), ("indrnn", {"nonlinearity": "tanh", "bias": False})]
assert {c for c, _ in MODERN} == {"slstm", "mingru", "minlstm", "indrnn"} <= set(CELLS)


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


# -- the equations, written out: plain torch, autograd through everything (m included) ---------
def g(v):
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def equations(name, options, p, x, state):
    """``(y, final state)`` for ``x`` ``(T, B, I)`` from the issue's equations."""
    bias = options.get("bias", True)
    ys = []
    state = list(state)
    for t in range(x.shape[0]):
        a = x[t] @ p["weight_ih"].T + (p["bias_ih"] if bias else 0)
        if name == "slstm":
            h, c, n, m = state
            B, H = h.shape
            K = options.get("num_heads", 1)
            DH = H // K
            w = p["weight_hh"].reshape(4, K, DH, DH)  # (gate, head, out, in)
            rec = torch.einsum("bkd,gked->bgke", h.reshape(B, K, DH), w).reshape(B, 4 * H)
            a = a + rec + (p["bias_hh"] if bias else 0)
            a_i, a_f, a_z, a_o = a.split(H, dim=-1)
            log_f = F.logsigmoid(a_f)
            m_new = torch.where(n == 0, a_i, torch.maximum(a_i, log_f + m))
            i_ = torch.exp(a_i - m_new)
            f_ = torch.exp(log_f + m - m_new)
            c = f_ * c + i_ * torch.tanh(a_z)
            n = f_ * n + i_
            h = torch.sigmoid(a_o) * c / n
            state = [h, c, n, m_new]
        elif name == "mingru":
            (h,) = state
            z, a_h = a.chunk(2, dim=-1)
            z = torch.sigmoid(z)
            state = [(1 - z) * h + z * g(a_h)]
        elif name == "minlstm":
            (h,) = state
            a_f, a_i, a_h = a.chunk(3, dim=-1)
            f, i = torch.sigmoid(a_f), torch.sigmoid(a_i)
            state = [f / (f + i) * h + i / (f + i) * g(a_h)]
        else:
            (h,) = state
            act = torch.tanh if options.get("nonlinearity", "relu") == "tanh" else torch.relu
            state = [act(a + p["weight_hh"] * h + (p["bias_hh"] if bias else 0))]
        ys.append(state[0])
    return torch.stack(ys), state


def make_case(name, options, T=5, B=3, I=4, H=6, seed=0, zero_state=False):
    cell = make_cell(name, **options)
    rng = np.random.default_rng(seed)
    params = {s.name: rng.uniform(-1, 1, s.shape) / math.sqrt(H) for s in cell.param_spec(I, H)}
    if name == "indrnn":
        params["weight_hh"] = rng.uniform(-1, 1, H)
    x = rng.standard_normal((T, B, I))
    state = [np.zeros((B, s)) for s in cell.state_sizes(H)] if zero_state else cell.sample_state(rng, B, H)
    dy = rng.standard_normal((T, B, H))
    d_state = [rng.standard_normal((B, H)) for _ in state]
    return cell, params, x, state, dy, d_state


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("zero_state", [False, True], ids=["given-state", "zero-state"])
@pytest.mark.parametrize("case", MODERN, ids=[_id(c) for c in MODERN])
def test_every_engine_matches_the_equations(case, zero_state):
    name, options = case
    cell, params, x, state, dy, d_state = make_case(name, options, zero_state=zero_state)
    # the equations: autograd through every path, m's too
    p = {k: _t(v) for k, v in params.items()}
    tx, ts = _t(x), [_t(s) for s in state]
    y_eq, state_eq = equations(name, options, p, tx, ts)
    # the final-state gradient a later output would send: blind to the sLSTM's scale (see
    # Cell.invariant_dstate); with it the gradient of m-held-constant is the whole gradient
    d_state = cell.invariant_dstate([s.detach().numpy() for s in state_eq], d_state)
    loss = (y_eq * torch.tensor(dy)).sum() + sum((s * torch.tensor(d)).sum() for s, d in zip(state_eq, d_state))
    wrt = {**p, "x": tx, **{f"{n}0": s for n, s in zip(cell.state_names, ts)}}
    if zero_state:  # n0 = 0 sits on the fresh-state branch's edge: no derivative there
        wrt = {k: v for k, v in wrt.items() if k not in ("n0", "m0")}
    grads_eq = dict(zip(wrt, torch.autograd.grad(loss, list(wrt.values()))))

    # the NumPy reference
    pub = tuple(state) if cell.has_cell_state else state[0]
    y_ref, state_ref, cache = forward(cell, params, x, pub)
    grads_ref = backward(cache, dy, tuple(d_state) if cell.has_cell_state else d_state[0])
    np.testing.assert_allclose(y_ref, y_eq.detach().numpy(), rtol=1e-10, atol=1e-12)
    state_ref = state_ref if cell.has_cell_state else (state_ref,)
    for a, b in zip(state_ref, state_eq):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12)
    for k, gr in grads_eq.items():
        np.testing.assert_allclose(grads_ref[k], gr.numpy(), rtol=1e-8, atol=1e-10, err_msg=f"reference {k}")

    for engine in ("fused", "autograd"):  # the torch engines (triton computes only the older cells)
        p2 = {k: _t(v) for k, v in params.items()}
        tx2, ts2 = _t(x), [_t(s) for s in state]
        y, sn = run_layer(cell, p2, tx2, tuple(ts2), engine=engine)
        torch.testing.assert_close(y, y_eq, rtol=1e-10, atol=1e-12)
        for a, b in zip(sn, state_eq):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        loss2 = (y * torch.tensor(dy)).sum() + sum((s * torch.tensor(d)).sum() for s, d in zip(sn, d_state))
        wrt2 = {**p2, "x": tx2, **{f"{n}0": s for n, s in zip(cell.state_names, ts2)}}
        got = dict(zip(wrt2, torch.autograd.grad(loss2, list(wrt2.values()))))
        for k, gr in grads_eq.items():
            torch.testing.assert_close(got[k], gr, rtol=1e-8, atol=1e-10, msg=f"{engine} {k}")


# -- the peers, on the same weights ---------------------------------------------------------
@pytest.mark.parametrize("num_heads", [1, 4])
def test_slstm_equals_xlstm_vanilla_loop(num_heads):
    vanilla = pytest.importorskip("xlstm.blocks.slstm.src.vanilla")
    T, B, I, H = 6, 3, 5, 8
    cell, params, x, _, dy, _ = make_case("slstm", {"num_heads": num_heads}, T=T, B=B, I=I, H=H, seed=1,
                                          zero_state=True)
    p = {k: _t(v) for k, v in params.items()}
    tx = _t(x)
    y, state = run_layer(cell, p, tx, tuple(torch.zeros(B, H, dtype=torch.float64) for _ in range(4)))
    grads = torch.autograd.grad((y * torch.tensor(dy)).sum(), [*p.values(), tx])

    # xlstm: Wx (T, B, 4H) precomputed, R (K, 4*DH, DH) per head with rows (gate, unit), b (4H,)
    K, DH = num_heads, H // num_heads
    p2 = {k: _t(v) for k, v in params.items()}
    tx2 = _t(x)
    R = p2["weight_hh"].reshape(4, K, DH, DH).transpose(0, 1).reshape(K, 4 * DH, DH)
    wx = tx2 @ p2["weight_ih"].T + p2["bias_ih"]
    states_all, last, _ = vanilla.slstm_forward(wx, torch.zeros(4, B, H, dtype=torch.float64), R, p2["bias_hh"],
                                               vanilla.slstm_pointwise_function_registry["slstm"])
    y_x = states_all[0, 1:]
    torch.testing.assert_close(y, y_x, rtol=1e-12, atol=1e-13)
    for ours, theirs in zip(state, last):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-13)
    # xlstm differentiates through m as well: on a loss of the outputs the gradients agree
    grads_x = torch.autograd.grad((y_x * torch.tensor(dy)).sum(), [*p2.values(), tx2])
    for k, a, b in zip([*p, "x"], grads, grads_x):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=k)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_min_cells_equal_mingru_pytorch(name):
    mg = pytest.importorskip("minGRU_pytorch")
    from minGRU_pytorch.minLSTM import minLSTM

    T, B, I, H = 7, 3, 5, 5  # the package maps dim -> dim (no projection out at expansion 1)
    cell, params, x, _, dy, _ = make_case(name, {"bias": False}, T=T, B=B, I=I, H=H, seed=2, zero_state=True)
    p = {"weight_ih": _t(params["weight_ih"])}
    tx = _t(x)
    y, _ = run_layer(cell, p, tx, (torch.zeros(B, H, dtype=torch.float64),))
    grads = torch.autograd.grad((y * torch.tensor(dy)).sum(), [p["weight_ih"], tx])

    peer = (mg.minGRU(I) if name == "mingru" else minLSTM(I)).double()
    w = params["weight_ih"]
    blocks = np.split(w, 2 if name == "mingru" else 3)
    theirs = np.concatenate([blocks[1], blocks[0]] if name == "mingru" else [blocks[2], blocks[0], blocks[1]])
    layer = peer.to_hidden_and_gate if name == "mingru" else peer.to_hidden_and_f_i_gate
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(theirs))  # their order: h, z / h, f, i
    tx2 = _t(x)
    y2 = peer(tx2.transpose(0, 1)).transpose(0, 1)  # batch-first there
    torch.testing.assert_close(y, y2, rtol=1e-10, atol=1e-12)
    g2 = torch.autograd.grad((y2 * torch.tensor(dy)).sum(), [layer.weight, tx2])
    g_ours = np.concatenate([np.split(grads[0].numpy(), 2 if name == "mingru" else 3)[i]
                             for i in ((1, 0) if name == "mingru" else (2, 0, 1))])
    np.testing.assert_allclose(g_ours, g2[0].numpy(), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(grads[1], g2[1], rtol=1e-8, atol=1e-10)


def test_mingru_from_a_given_state_equals_mingru_pytorch():
    mg = pytest.importorskip("minGRU_pytorch")
    T, B, H = 4, 2, 3
    cell, params, x, _, _, _ = make_case("mingru", {"bias": False}, T=T, B=B, I=H, H=H, seed=3)
    h0 = np.random.default_rng(3).uniform(0.1, 2.0, (B, H))  # their log-space scan takes log h0: positive
    y, _ = run_layer(cell, {"weight_ih": torch.tensor(params["weight_ih"])}, torch.tensor(x), (torch.tensor(h0),))
    peer = mg.minGRU(H).double()
    z, h = np.split(params["weight_ih"], 2)
    with torch.no_grad():
        peer.to_hidden_and_gate.weight.copy_(torch.tensor(np.concatenate([h, z])))
    y2 = peer(torch.tensor(x).transpose(0, 1), prev_hidden=torch.tensor(h0).unsqueeze(1)).transpose(0, 1)
    torch.testing.assert_close(y, y2, rtol=1e-10, atol=1e-12)


# -- the modules' surface beyond test_modules.py's layouts ---------------------------------------
MODULE_CASES = [("slstm", {"num_heads": 2}), ("mingru", {}), ("minlstm", {}), ("indrnn", {})]


@pytest.mark.parametrize("case", MODULE_CASES, ids=[_id(c) for c in MODULE_CASES])
def test_module_step_equals_forward(case):
    import gatedrnn

    name, options = case
    torch.manual_seed(0)
    module = gatedrnn.layer(name, 3, 4, num_layers=2, dtype=torch.float64, **options)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, state_n = module(x)
    state, ys = None, []
    for t in range(5):
        y, state = module.step(x[t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys), out, rtol=1e-12, atol=1e-12)
    for a, b in zip(state if isinstance(state, tuple) else (state,), state_n if isinstance(state_n, tuple) else (state_n,)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_slstm_with_one_head_loads_a_torch_lstm_state_dict():
    import gatedrnn

    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    ours = gatedrnn.SLSTM(3, 4, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())  # the same names and shapes, gate blocks in the same places
    out, (h, c, n, m) = ours(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 8) and all(s.shape == (4, 2, 4) for s in (h, c, n, m))


def test_slstm_module_refuses_a_state_of_the_wrong_length_or_shape():
    import gatedrnn

    module = gatedrnn.SLSTM(3, 4)
    x = torch.randn(5, 2, 3)
    zero = torch.zeros(1, 2, 4)
    with pytest.raises(RuntimeError, match=r"hx as a tuple \(h_0, c_0, n_0, m_0\), got a tuple of 2"):
        module(x, (zero, zero))
    with pytest.raises(RuntimeError, match="n_0"):
        module(x, (zero, zero, torch.zeros(1, 2, 3), zero))
    with pytest.raises(ValueError, match="num_heads must divide hidden_size"):
        gatedrnn.SLSTM(3, 4, num_heads=3)
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        gatedrnn.IndRNN(3, 4, nonlinearity="sigmoid")
