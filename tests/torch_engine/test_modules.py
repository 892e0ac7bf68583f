"""The sequence modules: three engines against the NumPy reference and against ``torch.nn``.

Every parity test runs in float64 and compares outputs, final states and every gradient
(parameters, input, initial state). The oracle for stacks (layers, directions, packed batches)
is the NumPy reference run layer by layer on each sequence alone, so masks, reversal within a
length and the packing itself are checked against code that has none of them.
Sizes are small (I=3, H=4, P=2, T=5, B=3) so the whole file runs in seconds.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import gatedrnn
from gatedrnn import reference
from gatedrnn.cells import make_cell
from gatedrnn.torch_engine import InputError, native_kernel
from gatedrnn.torch_engine import native
from gatedrnn.torch_engine.modules import MODULES

from .stepping import plausible

I, H, P, T, B = 3, 4, 2, 5, 3
F64 = torch.float64
ENGINES = ("fused", "autograd", "auto")
TOL = dict(rtol=1e-10, atol=1e-12)  # float64: the engines differ only in summation order

CASES = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"layer_norm": True}),
    ("lstm", {}), ("lstm", {"forget_bias": 1.0}), ("lstm", {"proj_size": P}), ("lstm", {"layer_norm": True}),
    ("lstm", {"drop_gates": ("i",)}), ("lstm", {"drop_gates": ("f", "o")}),
    ("lstm", {"input_activation": "identity"}), ("lstm", {"output_activation": "identity"}),
    ("lstm", {"bias": False}), ("lstm", {"forget_bias_init": 1.0}),
    ("peephole", {}), ("peephole", {"proj_size": P, "forget_bias": 0.5}),
    ("cifg", {}), ("cifg", {"layer_norm": True, "proj_size": P}),
    ("gru", {}), ("gru", {"layer_norm": True}), ("gru", {"bias": False}),
    ("mogrifier", {"rounds": 0}), ("mogrifier", {"rounds": 3}), ("mogrifier", {"rounds": 4, "rank": 2, "proj_size": P}),
    ("mogrifier", {"rounds": 2, "layer_norm": True}),
    ("slstm", {}), ("slstm", {"num_heads": 2}), ("mingru", {}), ("minlstm", {}), ("indrnn", {}),
    ("indrnn", {"nonlinearity": "tanh"}),
]
#: a plain case per cell plus projections: the stack layouts multiply these
STACK_CASES = [("rnn", {}), ("lstm", {}), ("lstm", {"proj_size": P}), ("gru", {}), ("peephole", {}),
               ("cifg", {"forget_bias": 1.0}), ("mogrifier", {"rounds": 3, "proj_size": P}),
               ("slstm", {"num_heads": 2}), ("mingru", {}), ("minlstm", {}), ("indrnn", {})]
LAYOUTS = {
    "L1": dict(num_layers=1),
    "L3": dict(num_layers=3),
    "L2-bidirectional": dict(num_layers=2, bidirectional=True),
    "L2-batch_first": dict(num_layers=2, batch_first=True),
    "L2-bidirectional-unbatched": dict(num_layers=2, bidirectional=True, unbatched=True),
    "L2-bidirectional-packed": dict(num_layers=2, bidirectional=True, packed=True),
    "L1-packed-batch_first": dict(num_layers=1, batch_first=True, packed=True),
}


def case_id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def make_module(cell_name, options, engine, seed=0, **kwargs):
    """A float64 module whose every parameter is random (layer-norm gains too, so none is trivial)."""
    module = MODULES[cell_name](I, H, engine=engine, dtype=F64, **options, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=F64) - 0.5)
    return module


# -- the NumPy oracle for a stack -----------------------------------------------------------
def numpy_stack(cell, layers, x, state0, lengths, dy, dstate):
    """Forward and backward of a stack, one sequence at a time, with ``reference.forward/backward``.

    ``layers[k][d]``: the single-layer NumPy params; ``x`` ``(T, B, I)``; ``state0``: tuple of
    ``(L*D, B, size)``; ``dy`` ``(T, B, D*R)`` (zero past each length); ``dstate`` like ``state0``.
    Returns ``y, state_n, grads`` with ``grads[(k, d, name)]``, ``grads["x"]``, ``grads["state"]``.
    """
    L, D = len(layers), len(layers[0])
    y = np.zeros(dy.shape)
    state_n = tuple(np.zeros(s.shape) for s in state0)
    grads = {(k, d, n): np.zeros(v.shape) for k in range(L) for d in range(D) for n, v in layers[k][d].items()}
    grads["x"] = np.zeros(x.shape)
    grads["state"] = tuple(np.zeros(s.shape) for s in state0)
    unpack = (lambda s: tuple(s)) if cell.has_cell_state else (lambda s: s[0])
    pack = (lambda s: tuple(s)) if cell.has_cell_state else (lambda s: (s,))
    for b in range(x.shape[1]):
        n = int(lengths[b])
        inp, caches = x[:n, b : b + 1], []
        for k in range(L):
            outs = []
            for d in range(D):
                idx = k * D + d
                s0 = unpack(tuple(s[idx, b : b + 1] for s in state0))
                xd = inp if d == 0 else inp[::-1]
                yd, sn, cache = reference.forward(cell, layers[k][d], xd, s0)
                caches.append(cache)
                outs.append(yd if d == 0 else yd[::-1])
                for full, part in zip(state_n, pack(sn)):
                    full[idx, b] = part[0]
            inp = np.concatenate(outs, axis=-1)
        y[:n, b] = inp[:, 0]
        dout = dy[:n, b : b + 1]
        for k in reversed(range(L)):
            dinp = 0.0
            R = dout.shape[-1] // D
            for d in range(D):
                idx = k * D + d
                dyd = dout[..., d * R : (d + 1) * R]
                g = reference.backward(caches[idx], dyd if d == 0 else dyd[::-1],
                                       unpack(tuple(s[idx, b : b + 1] for s in dstate)))
                for name in layers[k][d]:
                    grads[(k, d, name)] += g[name]
                dinp = dinp + (g["x"] if d == 0 else g["x"][::-1])
                for full, key in zip(grads["state"], (f"{n}0" for n in cell.state_names)):
                    full[idx, b] = g[key][0]
            dout = dinp
        grads["x"][:n, b] = dout[:, 0]
    return y, state_n, grads


def _numpy(t):
    return t.detach().numpy()


def run_layout(module, layout, seed=1):
    """Inputs in the layout's form, the module's forward and backward, and the NumPy oracle's."""
    gen = torch.Generator().manual_seed(seed)
    unbatched, packed = layout.get("unbatched", False), layout.get("packed", False)
    batch = 1 if unbatched else B
    L, D = module.num_layers, module.num_directions
    sizes = module.state_sizes
    lengths = torch.tensor([T, 2, T][:batch] if packed else [T] * batch)  # a tie and a short one
    x = torch.randn(T, batch, I, generator=gen, dtype=F64)  # time-major, zero past each length
    x = x * (torch.arange(T).unsqueeze(1) < lengths).unsqueeze(-1)
    state0 = plausible(module.cell, tuple(0.5 * torch.randn(L * D, batch, s, generator=gen, dtype=F64) for s in sizes))
    dy = torch.randn(T, batch, D * sizes[0], generator=gen, dtype=F64)
    dy = dy * (torch.arange(T).unsqueeze(1) < lengths).unsqueeze(-1)
    dstate = tuple(torch.randn(s.shape, generator=gen, dtype=F64) for s in state0)

    leaf_x = x.clone().requires_grad_()
    leaf_state = [s.clone().requires_grad_() for s in state0]
    hx_in = [s.squeeze(1) if unbatched else s for s in leaf_state]
    hx = tuple(hx_in) if module.cell.has_cell_state else hx_in[0]
    if packed:
        xb = leaf_x.transpose(0, 1) if module.batch_first else leaf_x
        inp = pack_padded_sequence(xb, lengths, batch_first=module.batch_first, enforce_sorted=False)
    elif unbatched:
        inp = leaf_x.squeeze(1)
    else:
        inp = leaf_x.transpose(0, 1) if module.batch_first else leaf_x
    out, state_n = module(inp, hx)
    state_n = tuple(state_n) if module.cell.has_cell_state else (state_n,)
    if packed:
        assert isinstance(out, PackedSequence)
        out = pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)[0]
    if unbatched:
        out, state_n = out.unsqueeze(1), tuple(s.unsqueeze(1) for s in state_n)
    elif module.batch_first:
        out = out.transpose(0, 1)
    loss = (out * dy).sum() + sum((s * d).sum() for s, d in zip(state_n, dstate))
    loss.backward()

    layers = [[{n: _numpy(v) for n, v in module.layer_params(k, d).items()} for d in range(D)] for k in range(L)]
    oracle = numpy_stack(module.cell, layers, x.numpy(), tuple(_numpy(s) for s in state0), lengths.numpy(),
                         dy.numpy(), tuple(_numpy(d) for d in dstate))
    got = (out, state_n, leaf_x.grad, [s.grad for s in leaf_state])
    return got, oracle


def assert_matches_oracle(module, got, oracle):
    (out, state_n, dx, dstate0), (y, ref_state, grads) = got, oracle
    np.testing.assert_allclose(_numpy(out), y, **TOL)
    for s, r in zip(state_n, ref_state):
        np.testing.assert_allclose(_numpy(s), r, **TOL)
    np.testing.assert_allclose(_numpy(dx), grads["x"], **TOL)
    for g, r in zip(dstate0, grads["state"]):
        np.testing.assert_allclose(_numpy(g), r, **TOL)
    for k in range(module.num_layers):
        for d in range(module.num_directions):
            for name, p in module.layer_params(k, d).items():
                np.testing.assert_allclose(_numpy(p.grad), grads[(k, d, name)], **TOL, err_msg=f"l{k} d{d} {name}")


# -- parity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_single_layer_matches_numpy_reference(case, engine):
    cell_name, options = case
    module = make_module(cell_name, options, engine)
    got, oracle = run_layout(module, LAYOUTS["L1"])
    assert_matches_oracle(module, got, oracle)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("layout", [k for k in LAYOUTS if k != "L1"])
@pytest.mark.parametrize("case", STACK_CASES, ids=[case_id(c) for c in STACK_CASES])
def test_stack_matches_numpy_reference(case, layout, engine):
    cell_name, options = case
    kwargs = {k: v for k, v in LAYOUTS[layout].items() if k not in ("unbatched", "packed")}
    module = make_module(cell_name, options, engine, **kwargs)
    got, oracle = run_layout(module, LAYOUTS[layout])
    assert_matches_oracle(module, got, oracle)


# -- torch.nn compatibility -----------------------------------------------------------------
TORCH_CASES = [("lstm", {}), ("lstm", {"proj_size": P}), ("lstm", {"bias": False}), ("gru", {}),
               ("rnn", {}), ("rnn", {"nonlinearity": "relu"})]
TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", TORCH_CASES, ids=[case_id(c) for c in TORCH_CASES])
def test_torch_nn_state_dict_gives_same_outputs_states_and_gradients(case, layout, engine):
    cell_name, options = case
    spec = LAYOUTS[layout]
    kwargs = {k: v for k, v in spec.items() if k not in ("unbatched", "packed")}
    torch.manual_seed(0)
    theirs = TORCH_CLASSES[cell_name](I, H, dtype=F64, **options, **kwargs)
    ours = MODULES[cell_name](I, H, dtype=F64, engine=engine, **options, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]

    results = []
    for module in (theirs, ours):
        gen = torch.Generator().manual_seed(3)
        batch = 1 if spec.get("unbatched") else B
        D = 2 if spec.get("bidirectional") else 1
        sizes = ours.state_sizes
        x = torch.randn(T, batch, I, generator=gen, dtype=F64, requires_grad=True)
        hx = [torch.randn(spec["num_layers"] * D, batch, s, generator=gen, dtype=F64).requires_grad_() for s in sizes]
        hx_in = [h.squeeze(1) for h in hx] if spec.get("unbatched") else hx
        if spec.get("packed"):
            lengths = torch.tensor([2, T, 2])
            xb = x.transpose(0, 1) if spec.get("batch_first") else x
            inp = pack_padded_sequence(xb, lengths, batch_first=spec.get("batch_first", False), enforce_sorted=False)
        elif spec.get("unbatched"):
            inp = x.squeeze(1)
        else:
            inp = x.transpose(0, 1) if spec.get("batch_first") else x
        out, state = module(inp, tuple(hx_in) if cell_name == "lstm" else hx_in[0])
        state = tuple(state) if cell_name == "lstm" else (state,)
        data = out.data if spec.get("packed") else out
        loss = (data * torch.randn(data.shape, generator=gen, dtype=F64)).sum()
        loss = loss + sum((s * torch.randn(s.shape, generator=gen, dtype=F64)).sum() for s in state)
        loss.backward()
        grads = {n: p.grad for n, p in module.named_parameters()}
        results.append((data, state, x.grad, [h.grad for h in hx], grads))
    (y0, s0, dx0, dh0, g0), (y1, s1, dx1, dh1, g1) = results
    torch.testing.assert_close(y1, y0, **TOL)
    for a, b in zip(s1, s0):
        torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(dx1, dx0, **TOL)
    for a, b in zip(dh1, dh0):
        torch.testing.assert_close(a, b, **TOL)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], **TOL, msg=name)


def test_auto_float32_is_torch_nn_bit_for_bit():
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
    ours = gatedrnn.LSTM(I, H, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I)
    y0, (h0, c0) = theirs(x)
    y1, (h1, c1) = ours(x)
    assert torch.equal(y0, y1) and torch.equal(h0, h1) and torch.equal(c0, c1)


# -- which engine "auto" picks ---------------------------------------------------------------
@pytest.mark.parametrize("cell_name, options, expected", [
    ("lstm", {}, "torch"), ("lstm", {"proj_size": P, "bias": False}, "torch"),
    ("lstm", {"forget_bias_init": 1.0}, "torch"),  # an initialisation only
    ("gru", {}, "torch"), ("rnn", {"nonlinearity": "relu"}, "torch"),
    ("lstm", {"forget_bias": 1.0}, "fused"), ("lstm", {"layer_norm": True}, "fused"),
    ("lstm", {"drop_gates": ("o",)}, "fused"), ("lstm", {"output_activation": "identity"}, "fused"),
    ("gru", {"layer_norm": True}, "fused"), ("rnn", {"layer_norm": True}, "fused"),
    ("peephole", {}, "fused"), ("cifg", {}, "fused"), ("mogrifier", {"rounds": 0}, "fused"),
])
def test_auto_engine_choice(cell_name, options, expected):
    module = MODULES[cell_name](I, H, **options)
    x = torch.randn(T, B, I)
    assert module.resolve_engine(x) == expected
    assert MODULES[cell_name](I, H, engine="fused", **options).resolve_engine(x) == "fused"


@pytest.mark.parametrize("options, training, expected", [
    ({"zoneout": 0.1}, False, "fused"),  # zoneout acts in evaluation too, as its expectation
    ({"dropout_state": 0.2}, True, "fused"), ({"dropout_state": 0.2}, False, "torch"),
    ({"weight_drop": 0.3}, True, "fused"),
])
def test_auto_sends_active_regularisation_to_the_fused_engine(options, training, expected):
    module = gatedrnn.LSTM(I, H, **options).train(training)
    x = torch.randn(T, B, I)
    assert module.resolve_engine(x) == expected
    assert (native_kernel(module, x) is not None) == (expected == "torch")


def test_auto_keeps_cpu_autocast_and_half_on_cpu_off_torch_kernels(monkeypatch):
    """Without bf16 arithmetic of the processor's own (test_precision.py has the processor with it)."""
    monkeypatch.setattr(native, "native_bf16", lambda: False)
    module = gatedrnn.LSTM(I, H)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert native_kernel(module, torch.randn(T, B, I)) is None
    assert native_kernel(module.to(torch.float16), torch.randn(T, B, I, dtype=torch.float16)) is None


# -- dropout between layers -------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_dropout_only_in_training_and_only_between_layers(engine):
    torch.manual_seed(0)
    module = make_module("lstm", {}, engine, num_layers=2, dropout=1.0)
    plain = make_module("lstm", {}, engine, num_layers=2)
    x = torch.randn(T, B, I, dtype=F64)
    module.eval()
    torch.testing.assert_close(module(x)[0], plain(x)[0], rtol=0, atol=0)
    module.train()
    y, (h, c) = module(x)  # dropout=1 zeroes the second layer's input, not the first's state
    top = gatedrnn.LSTM(H, H, engine=engine, dtype=F64)
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in module.state_dict().items() if "_l1" in k})
    y_top, (h_top, c_top) = top(torch.zeros(T, B, H, dtype=F64))
    torch.testing.assert_close(y, y_top, **TOL)
    torch.testing.assert_close(h[0], plain(x)[1][0][0], **TOL)
    torch.testing.assert_close(h[1], h_top[0], **TOL)


def test_auto_dropout_matches_torch_nn_under_the_same_seed():
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(I, H, num_layers=3, dropout=0.5)
    ours = gatedrnn.LSTM(I, H, num_layers=3, dropout=0.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I)
    torch.manual_seed(7)
    y0 = theirs(x)[0]
    torch.manual_seed(7)
    y1 = ours(x)[0]
    assert torch.equal(y0, y1)


def test_dropout_on_one_layer_warns_as_torch_nn():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        gatedrnn.GRU(I, H, dropout=0.2)


# -- one token at a time ----------------------------------------------------------------------
@pytest.mark.parametrize("case", STACK_CASES + [("lstm", {"layer_norm": True, "forget_bias": 1.0})],
                         ids=[case_id(c) for c in STACK_CASES + [("lstm", {"layer_norm": True, "forget_bias": 1.0})]])
def test_step_equals_forward(case):
    cell_name, options = case
    module = make_module(cell_name, options, "auto", num_layers=2)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    y, state = module(x)
    ys, s = [], None
    for t in range(T):
        out, s = module.step(x[t], s)
        ys.append(out)
    torch.testing.assert_close(torch.stack(ys), y, **TOL)
    for a, b in zip(s if module.cell.has_cell_state else (s,), state if module.cell.has_cell_state else (state,)):
        torch.testing.assert_close(a, b, **TOL)
    (g_forward,) = torch.autograd.grad(y.sum(), x)
    (g_step,) = torch.autograd.grad(torch.stack(ys).sum(), x)
    torch.testing.assert_close(g_step, g_forward, **TOL)
    out1, s1 = module.step(x[0, 0], None)  # unbatched: (I,) in, (R,) out and (L, size) states
    torch.testing.assert_close(out1, ys[0][0], **TOL)
    assert (s1[0] if module.cell.has_cell_state else s1).shape == (2, module.state_sizes[0])


def test_step_reuses_its_parameter_dicts_until_a_parameter_is_replaced():
    module = gatedrnn.LSTM(I, H, num_layers=2)
    first = module._step_params()
    assert module._step_params() is first
    module.load_state_dict(gatedrnn.LSTM(I, H, num_layers=2).state_dict())  # copies in place
    assert module._step_params() is first
    module.weight_hh_l1 = torch.nn.Parameter(torch.zeros(4 * H, H))
    assert module._step_params()[0][1]["weight_hh"] is module.weight_hh_l1
    module.double()  # moved in place: the single-step kernels are rebuilt for the new dtype
    out, _ = module.step(torch.randn(B, I, dtype=F64))
    assert out.dtype == F64 and module._step_params()[1][0] is not None


def test_step_refuses_bidirectional():
    with pytest.raises(ValueError, match="bidirectional"):
        gatedrnn.LSTM(I, H, bidirectional=True).step(torch.randn(B, I))


# -- bad input ------------------------------------------------------------------------------
def _raises(fn, *fragments):
    with pytest.raises((ValueError, RuntimeError)) as info:
        fn()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return info


def test_bad_input_says_expected_and_got():
    lstm = gatedrnn.LSTM(I, H, num_layers=2)
    gru = gatedrnn.GRU(I, H)
    x = torch.randn(T, B, I)
    _raises(lambda: lstm(torch.randn(T, B, I, 1)), "2D or 3D", "4D", f"{(T, B, I, 1)}")
    _raises(lambda: lstm(torch.randn(T, B, I + 1)), f"Expected {I}", f"got {I + 1}")
    _raises(lambda: lstm(x, (torch.zeros(1, B, H), torch.zeros(2, B, H))), f"{(2, B, H)}", f"{(1, B, H)}")
    _raises(lambda: lstm(x, (torch.zeros(2, B + 1, H), torch.zeros(2, B + 1, H))), f"{(2, B, H)}", f"{(2, B + 1, H)}")
    _raises(lambda: lstm(x, (torch.zeros(2, B, H), torch.zeros(2, B, H + 1))), "c_0", f"{(2, B, H)}", f"{(2, B, H + 1)}")
    _raises(lambda: lstm(x, torch.zeros(2, B, H)), "tuple (h_0, c_0)", f"{(2, B, H)}")
    _raises(lambda: lstm(x[:, 0], (torch.zeros(2, 1, H), torch.zeros(2, 1, H))), "unbatched", "2-D", "3-D")
    _raises(lambda: gru(x, torch.zeros(B, H)), "3-D", "2-D")
    _raises(lambda: gru(x, (torch.zeros(1, B, H),)), "one tensor h_0", "tuple")
    _raises(lambda: lstm(x.double()), "torch.float64", "torch.float32")
    _raises(lambda: gru(x, torch.zeros(1, B, H, dtype=F64)), "torch.float64", "torch.float32")
    _raises(lambda: gru(torch.zeros(T, B, I, device="meta")), "meta", "cpu")
    _raises(lambda: gru(torch.zeros(T, B, I, dtype=torch.long)), "floating point", "torch.int64")
    _raises(lambda: lstm.step(torch.randn(B, I + 1)), f"got {I + 1} expected {I}", f"{(B, I + 1)}")
    info = _raises(lambda: lstm(torch.randn(T, B, I + 1)))
    assert isinstance(info.value, InputError)  # both ValueError and torch.nn's RuntimeError


@pytest.mark.parametrize("kwargs, fragments", [
    ({"proj_size": -1}, ("proj_size", "-1")),
    ({"proj_size": H}, ("proj_size", "smaller than hidden_size", f"proj_size={H}", f"hidden_size={H}")),
    ({"proj_size": H + 3}, ("smaller than hidden_size",)),
    ({"projsize": 2}, ("unknown option", "projsize", "proj_size")),
    ({"engine": "cudnn"}, ("engine", "cudnn", "fused")),
    ({"dropout": 1.5}, ("dropout", "1.5")),
])
def test_bad_constructor_arguments(kwargs, fragments):
    _raises(lambda: gatedrnn.LSTM(I, H, **kwargs), *fragments)


def test_options_of_other_cells_are_refused():
    _raises(lambda: gatedrnn.GRU(I, H, proj_size=2), "proj_size argument is only supported for LSTM", "GRU")
    _raises(lambda: gatedrnn.LSTM(I, H, nonlinearity="relu"), "unknown option", "nonlinearity")
    _raises(lambda: gatedrnn.RNN(I, H, nonlinearity="gelu"), "gelu", "tanh")
    with pytest.raises(ValueError, match="unknown cell"):
        gatedrnn.layer("lstmm", I, H)


# -- training wrappers --------------------------------------------------------------------------
class TinyModel(torch.nn.Module):
    def __init__(self, cell_name="lstm", **options):
        super().__init__()
        self.rnn = gatedrnn.layer(cell_name, I, H, num_layers=2, batch_first=True, **options)
        self.head = torch.nn.Linear(self.rnn.state_sizes[0], 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _train(model, steps=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, I, generator=gen)
    target = 0.1 * x.sum(-1, keepdim=True).cumsum(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("backend", [
    "aot_eager",
    pytest.param("inductor", marks=pytest.mark.skipif(
        not os.environ.get("GATEDRNN_SLOW_TESTS"),
        reason="inductor's code generation takes about a minute per model on a 2-core CPU; "
               "benchmarks/compile_time.py measures it (set GATEDRNN_SLOW_TESTS=1 to run it here)")),
])
@pytest.mark.parametrize("options", [{}, {"forget_bias": 1.0}], ids=["torch-kernel", "fused"])
def test_trains_under_torch_compile(options, backend):
    # aot_eager traces forward and backward as torch.compile does, without inductor's code
    # generation. {}: engine="auto" hands the LSTM to torch.nn's kernel, which runs outside the
    # graph as torch.nn's own modules do under dynamo; forget_bias keeps it on the fused engine
    torch.manual_seed(0)
    eager = TinyModel(**options)
    compiled = TinyModel(**options)
    compiled.load_state_dict(eager.state_dict())
    expected = _train(eager)
    torch._dynamo.reset()
    got = _train(torch.compile(compiled, backend=backend))
    assert got[-1] < got[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5)  # float32, same ops in the same order
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("cell_name, options", [("lstm", {}), ("mogrifier", {"rounds": 2})])
def test_trains_under_distributed_data_parallel(cell_name, options, tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    plain = TinyModel(cell_name, **options)
    wrapped = TinyModel(cell_name, **options)
    wrapped.load_state_dict(plain.state_dict())
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        got = _train(DistributedDataParallel(wrapped))
    finally:
        dist.destroy_process_group()
    expected = _train(plain)
    assert got[-1] < got[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # one rank: the average is the gradient
    for (name, a), b in zip(plain.named_parameters(), wrapped.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("cell", ["lstm", "peephole", "gru"])
@pytest.mark.parametrize("option", ["weight_drop", "dropout_state"])
def test_step_in_training_sees_the_dropped_weights(cell, option):
    """In training mode ``weight_drop`` and ``dropout_state`` change what a step computes; the
    single-step kernels, built on the undropped parameters, must not run then. Same seed, same
    masks: the fused step equals the reference step, and differs from evaluation mode."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    hx = torch.randn(2, 3, 6, dtype=torch.float64, generator=gen)
    hx = (hx, torch.randn(2, 3, 6, dtype=torch.float64, generator=gen)) if cell != "gru" else hx
    outs = {}
    for engine in ("fused", "autograd"):
        torch.manual_seed(0)
        module = gatedrnn.layer(cell, 5, 6, num_layers=2, engine=engine, dtype=torch.float64, **{option: 0.5})
        torch.manual_seed(5)
        outs[engine] = module.step(x, hx)[0]
    module.eval()
    torch.testing.assert_close(outs["fused"], outs["autograd"], rtol=1e-12, atol=1e-12)
    assert not torch.allclose(outs["fused"], module.step(x, hx)[0])


# -- documentation ------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", MODULES.values(), ids=lambda c: c.__name__)
def test_docstring_documents_every_argument_and_its_example_runs(cls):
    import doctest
    import inspect

    from gatedrnn.torch_engine.regularisation import OPTIONS

    doc = cls.__doc__
    assert "$" not in doc, "a section marker was not expanded"
    cell = make_cell(cls.cell_name)
    signature = [p for p in inspect.signature(cls).parameters if p != "options"]
    for name in [*signature, *type(cell).options, *OPTIONS]:
        assert f"{name}:" in doc or f"{name}," in doc, f"{cls.__name__} does not document {name}"
    for section in ("Args:", "Keyword Args:", "Inputs:", "Outputs:", "Attributes:", "Example::", 'engine: '):
        assert section in doc, section
    assert "fused" in doc and "auto" in doc
    assert inspect.getmodule(cls).__name__.startswith("gatedrnn.torch_engine.modules")
    torch.manual_seed(0)
    tests = doctest.DocTestFinder().find(cls, globs={"torch": torch, "gatedrnn": gatedrnn})
    results = [doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(t) for t in tests if t.examples]
    assert results and all(r.failed == 0 and r.attempted > 0 for r in results)
