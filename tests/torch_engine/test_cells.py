"""Single-step modules (``gatedrnn.LSTMCell`` ...): one step of the NumPy reference, ``torch.nn``'s
cells where one exists, the layer-0 parameters of a sequence module, and bad input.

Float64 and tiny sizes (I=3, H=4, P=2, B=3).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn import reference
from gatedrnn.cells import make_cell
from gatedrnn.torch_engine import CELL_MODULES, MODULES, InputError

I, H, P, B = 3, 4, 2, 3
F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)  # float64, same equations

CASES = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu", "layer_norm": True}),
    ("lstm", {}), ("lstm", {"forget_bias": 1.0, "proj_size": P}), ("lstm", {"layer_norm": True}),
    ("lstm", {"drop_gates": ("f",), "output_activation": "identity"}), ("lstm", {"bias": False}),
    ("peephole", {}), ("peephole", {"proj_size": P}), ("cifg", {}), ("cifg", {"layer_norm": True}),
    ("gru", {}), ("gru", {"bias": False, "layer_norm": True}),
    ("mogrifier", {}), ("mogrifier", {"rounds": 4, "rank": 2, "proj_size": P}),
]


def case_id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def make_cell_module(cell_name, options, seed=0):
    module = CELL_MODULES[cell_name](I, H, dtype=F64, **options)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=F64) - 0.5)
    return module


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_one_step_matches_numpy_reference(case):
    cell_name, options = case
    module = make_cell_module(cell_name, options)
    sizes = module.state_sizes
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(B, I, generator=gen, dtype=F64, requires_grad=True)
    state = [(0.5 * torch.randn(B, s, generator=gen, dtype=F64)).requires_grad_() for s in sizes]
    d_new = [torch.randn(B, s, generator=gen, dtype=F64) for s in sizes]
    new = module(x, tuple(state) if module.cell.has_cell_state else state[0])
    new = tuple(new) if module.cell.has_cell_state else (new,)
    sum((n * d).sum() for n, d in zip(new, d_new)).backward()

    params = {name: p.detach().numpy() for name, p in module.named_parameters()}
    s0 = [s.detach().numpy() for s in state]
    _, ref_state, cache = reference.forward(module.cell, params, x.detach().numpy()[None],
                                            tuple(s0) if module.cell.has_cell_state else s0[0])
    ref_state = tuple(ref_state) if module.cell.has_cell_state else (ref_state,)
    dn = [d.numpy() for d in d_new]
    grads = reference.backward(cache, np.zeros((1, B, sizes[0])), tuple(dn) if module.cell.has_cell_state else dn[0])
    for n, r in zip(new, ref_state):
        np.testing.assert_allclose(n.detach().numpy(), r, **TOL)
    np.testing.assert_allclose(x.grad.numpy(), grads["x"][0], **TOL)
    for s, key in zip(state, ("h0", "c0")):
        np.testing.assert_allclose(s.grad.numpy(), grads[key], **TOL)
    for name, p in module.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name], **TOL, err_msg=name)


TORCH_CELLS = [("lstm", torch.nn.LSTMCell, {}), ("gru", torch.nn.GRUCell, {}), ("rnn", torch.nn.RNNCell, {}),
               ("rnn", torch.nn.RNNCell, {"nonlinearity": "relu"}), ("lstm", torch.nn.LSTMCell, {"bias": False})]


@pytest.mark.parametrize("cell_name, cls, options", TORCH_CELLS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("batched", [True, False])
def test_torch_nn_cell_state_dict_loads_and_agrees(cell_name, cls, options, batched):
    torch.manual_seed(0)
    theirs = cls(I, H, dtype=F64, **options)
    ours = CELL_MODULES[cell_name](I, H, dtype=F64, **options)
    ours.load_state_dict(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    results = []
    for module in (theirs, ours):
        gen = torch.Generator().manual_seed(2)
        shape = (B,) if batched else ()
        x = torch.randn(*shape, I, generator=gen, dtype=F64, requires_grad=True)
        hx = [torch.randn(*shape, H, generator=gen, dtype=F64).requires_grad_() for _ in ours.state_sizes]
        out = module(x, tuple(hx) if cell_name == "lstm" else hx[0])
        out = tuple(out) if cell_name == "lstm" else (out,)
        sum((o * torch.randn(o.shape, generator=gen, dtype=F64)).sum() for o in out).backward()
        results.append((out, x.grad, [h.grad for h in hx], {n: p.grad for n, p in module.named_parameters()}))
    (o0, dx0, dh0, g0), (o1, dx1, dh1, g1) = results
    for a, b in zip(o1, o0):
        torch.testing.assert_close(a, b, **TOL)
    torch.testing.assert_close(dx1, dx0, **TOL)
    for a, b in zip(dh1, dh0):
        torch.testing.assert_close(a, b, **TOL)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], **TOL, msg=name)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_layer0_of_a_sequence_module_steps_the_same(case):
    cell_name, options = case
    seq = MODULES[cell_name](I, H, dtype=F64, **options)
    cell = CELL_MODULES[cell_name](I, H, dtype=F64, **options)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in seq.state_dict().items()})
    x = torch.randn(4, B, I, dtype=F64)
    y, _ = seq(x)
    state = None
    for t in range(x.shape[0]):
        state = cell(x[t], state)
        h = state[0] if cell.cell.has_cell_state else state
        torch.testing.assert_close(h, y[t], **TOL)


def test_zero_state_by_default_and_unbatched_shapes():
    cell = gatedrnn.LSTMCell(I, H, proj_size=P)
    x = torch.randn(B, I)
    h, c = cell(x)
    h0, c0 = cell(x, (torch.zeros(B, P), torch.zeros(B, H)))
    assert torch.equal(h, h0) and torch.equal(c, c0)
    hu, cu = cell(x[0])
    assert hu.shape == (P,) and cu.shape == (H,)
    torch.testing.assert_close(hu, h[0], rtol=1e-6, atol=1e-7)  # float32, same ops on one row
    assert gatedrnn.GRUCell(I, H)(x[0], torch.zeros(H)).shape == (H,)


def _raises(fn, *fragments):
    with pytest.raises((ValueError, RuntimeError)) as info:
        fn()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    return info


def test_bad_input_says_expected_and_got():
    lstm = gatedrnn.LSTMCell(I, H)
    gru = gatedrnn.GRUCell(I, H)
    x = torch.randn(B, I)
    _raises(lambda: lstm(torch.randn(1, B, I)), "1D or 2D", "3D")
    _raises(lambda: lstm(torch.randn(B, I + 2)), f"got {I + 2} expected {I}", f"{(B, I + 2)}")
    _raises(lambda: lstm(x, torch.zeros(B, H)), "tuple (h, c)", f"{(B, H)}")
    _raises(lambda: lstm(x, (torch.zeros(B, H), torch.zeros(B + 1, H))), f"{(B, H)}", f"{(B + 1, H)}")
    _raises(lambda: lstm(x[0], (torch.zeros(1, H), torch.zeros(1, H))), f"{(H,)}", f"{(1, H)}")
    _raises(lambda: gru(x, (torch.zeros(B, H),)), "one tensor h", "tuple")
    _raises(lambda: gru(x.double()), "torch.float64", "torch.float32")
    _raises(lambda: gru(x, torch.zeros(B, H, dtype=F64)), "torch.float64", "torch.float32")
    _raises(lambda: gru(torch.zeros(B, I, device="meta")), "meta", "cpu")
    assert isinstance(_raises(lambda: gru(torch.randn(B, I + 1))).value, InputError)
    _raises(lambda: gatedrnn.LSTMCell(I, H, proj_size=H), "smaller than hidden_size")
    _raises(lambda: gatedrnn.GRUCell(I, H, forget_bias=1.0), "unknown option", "forget_bias")
    _raises(lambda: gatedrnn.RNNCell(I, H, nonlinearity="sigmoid"), "sigmoid", "tanh")


@pytest.mark.parametrize("cls", CELL_MODULES.values(), ids=lambda c: c.__name__)
def test_docstring_documents_every_argument_and_its_example_runs(cls):
    import doctest
    import inspect

    doc = cls.__doc__
    assert "$" not in doc, "a section marker was not expanded"
    options = make_cell(cls.cell_name).options
    signature = [p for p in inspect.signature(cls).parameters if p != "options"]
    for name in [*signature, *options, "zoneout"]:
        assert f"{name}:" in doc or f"{name}," in doc, f"{cls.__name__} does not document {name}"
    for section in ("Args:", "Keyword Args:", "Inputs:", "Outputs:", "Attributes:", "Example::"):
        assert section in doc, section
    torch.manual_seed(0)
    tests = doctest.DocTestFinder().find(cls, globs={"torch": torch, "gatedrnn": gatedrnn})
    results = [doctest.DocTestRunner().run(t) for t in tests if t.examples]
    assert results and all(r.failed == 0 and r.attempted > 0 for r in results)


@pytest.mark.parametrize("cls", CELL_MODULES.values(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("input_size, hidden_size, batch", [(3, 0, 2), (0, 4, 2), (0, 0, 2), (3, 4, 0)])
def test_zero_sizes_give_empty_states_of_the_right_shape(cls, input_size, hidden_size, batch):
    """As torch.nn's cells: zero sizes make empty weights; a step returns states of the declared
    sizes (empty where a size is zero) that take part in the graph (a gradient flows, all zero)."""
    cell = cls(input_size, hidden_size, dtype=F64)
    x = torch.randn(batch, input_size, dtype=F64, requires_grad=True)
    state = cell(x)
    state = state if isinstance(state, tuple) else (state,)
    assert [tuple(s.shape) for s in state] == [(batch, size) for size in cell.state_sizes]
    sum(s.sum() for s in state).backward()
    assert x.grad is not None and x.grad.shape == x.shape
    if input_size == 0 or hidden_size == 0 or batch == 0:  # nothing to differentiate by
        assert torch.count_nonzero(x.grad) == 0
