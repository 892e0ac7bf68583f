"""Second derivatives through the fused engine: ``gradgradcheck`` in float64 for every cell and
option, and the first-order path kept free of the graph-building twin.

Sizes are tiny (I=2, H=3, P=2, T=3, B=2): a second-order check costs one recomputation per
perturbed element. ``fast_mode`` checks random projections of the Jacobian, which catches a wrong
second derivative with probability one; a few cases run the full check as well.
"""
from __future__ import annotations

import pytest
import torch

import gatedrnn
from gatedrnn.cells import CELLS, make_cell
from gatedrnn.torch_engine import function, run_layer
from gatedrnn.torch_engine.cell_modules import CELL_MODULES
from gatedrnn.torch_engine.modules import MODULES
from gatedrnn.torch_engine.ops import TORCH_OPS

from .stepping import plausible

I, H, P, T, B = 2, 3, 2, 3, 2
F64 = torch.float64

CASES = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("lstm", {"forget_bias": 1.0}),
    ("peephole", {}), ("cifg", {}), ("gru", {}),
    ("mogrifier", {"rounds": 1}), ("mogrifier", {"rounds": 4}), ("mogrifier", {"rounds": 3, "rank": 2}),
    ("lstm", {"proj_size": P}), ("peephole", {"proj_size": P}), ("cifg", {"proj_size": P}),
    ("mogrifier", {"rounds": 3, "proj_size": P, "rank": 1}),
    *[(c, {"layer_norm": True}) for c in CELLS if "layer_norm" in CELLS[c].options],
    ("slstm", {}), ("slstm", {"num_heads": 3}), ("mingru", {}), ("minlstm", {}), ("indrnn", {}),
    ("indrnn", {"nonlinearity": "tanh"}),
    ("lstm", {"layer_norm": True, "proj_size": P}),
    ("lstm", {"drop_gates": ("i",)}), ("lstm", {"drop_gates": ("f", "o")}), ("peephole", {"drop_gates": ("o",)}),
    ("lstm", {"input_activation": "identity"}), ("lstm", {"output_activation": "identity"}),
    *[(c, {"bias": False}) for c in ("rnn", "lstm", "gru", "mogrifier")],
]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def _layer_inputs(cell_name, options, seed=0):
    """Float64 leaves: the single-layer parameters, ``x`` ``(T, B, I)`` and the initial state."""
    gen = torch.Generator().manual_seed(seed)
    cell = make_cell(cell_name, **options)
    params = {s.name: (torch.rand(s.shape, generator=gen, dtype=F64) - 0.5) for s in cell.param_spec(I, H)}
    x = torch.randn(T, B, I, generator=gen, dtype=F64)
    state = plausible(cell, tuple(0.5 * torch.randn(B, size, generator=gen, dtype=F64) for size in cell.state_sizes(H)))
    leaves = [t.requires_grad_() for t in (*params.values(), x, *state)]
    return cell, list(params), leaves


def _layer_fn(cell, names, keep=None, engine="fused"):
    n = len(names)

    def fn(*ts):
        y, state = run_layer(cell, dict(zip(names, ts[:n])), ts[n], tuple(ts[n + 1 :]), keep, engine)
        return (y, *cell.observed_state(TORCH_OPS, state))  # (the sLSTM's without its scale m)

    return fn


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_run_layer_gradgradcheck(case):
    cell, names, leaves = _layer_inputs(*case)
    assert torch.autograd.gradgradcheck(_layer_fn(cell, names), leaves, fast_mode=True)


@pytest.mark.parametrize("case", [("lstm", {"proj_size": P}), ("gru", {}), ("mogrifier", {"rounds": 2})], ids=_id)
def test_run_layer_gradgradcheck_full(case):
    cell, names, leaves = _layer_inputs(*case)
    assert torch.autograd.gradgradcheck(_layer_fn(cell, names), leaves)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "peephole"])
def test_zoneout_masks_gradgradcheck(cell_name):
    cell, names, leaves = _layer_inputs(cell_name, {"proj_size": P} if cell_name == "peephole" else {})
    gen = torch.Generator().manual_seed(1)
    # one binary mask (training zoneout) and one fractional (its expectation at evaluation)
    keep = tuple(
        (torch.rand(T, B, size, generator=gen, dtype=F64) < 0.5).to(F64) if k == 0 else torch.full((T, B, size), 0.3, dtype=F64)
        for k, size in enumerate(cell.state_sizes(H))
    )
    assert torch.autograd.gradgradcheck(_layer_fn(cell, names, keep), leaves, fast_mode=True)


@pytest.mark.parametrize("case", CASES[:14], ids=[_id(c) for c in CASES[:14]])
def test_graph_of_gradient_matches_first_order(case):
    """The gradients computed with ``create_graph=True`` (through the twin) are the hand-derived ones."""
    cell, names, leaves = _layer_inputs(*case)
    fn = _layer_fn(cell, names)
    out = fn(*leaves)
    gen = torch.Generator().manual_seed(2)
    cot = [torch.randn(o.shape, generator=gen, dtype=F64) for o in out]
    first = torch.autograd.grad(out, leaves, cot, retain_graph=True)
    graphed = torch.autograd.grad(out, leaves, cot, create_graph=True)
    for name, a, b in zip([*names, "x", "h0", "c0"], first, graphed):
        assert b.requires_grad
        # two float64 evaluations of the same sums in a different order: rounding only
        torch.testing.assert_close(b.detach(), a, rtol=1e-10, atol=1e-12, msg=name)


def _module_fn(module, with_state):
    names = [n for n, _ in module.named_parameters()]
    n = len(names)

    def fn(*ts):
        params = dict(zip(names, ts[:n]))
        args = (ts[n],)
        if with_state:
            hx = ts[n + 1 :]
            args += (tuple(hx) if module.cell.has_cell_state else hx[0],)
        out, state = torch.func.functional_call(module, params, args)
        state = state if isinstance(state, tuple) else (state,)
        return (out, *state)

    return fn


MODULE_CASES = [("lstm", {}), ("lstm", {"proj_size": P}), ("gru", {}), ("rnn", {}), ("peephole", {}),
                ("cifg", {"layer_norm": True}), ("mogrifier", {"rounds": 2, "proj_size": P})]


@pytest.mark.parametrize("case", MODULE_CASES, ids=[_id(c) for c in MODULE_CASES])
def test_module_gradgradcheck_two_layers_bidirectional(case):
    cell_name, options = case
    torch.manual_seed(0)
    module = MODULES[cell_name](I, H, num_layers=2, bidirectional=True, batch_first=True, engine="fused",
                                dtype=F64, **options)
    x = torch.randn(B, T, I, dtype=F64, requires_grad=True)
    hx = [(0.5 * torch.randn(4, B, size, dtype=F64)).requires_grad_() for size in module.state_sizes]
    leaves = [p.detach().clone().requires_grad_() for p in module.parameters()] + [x, *hx]
    assert torch.autograd.gradgradcheck(_module_fn(module, with_state=True), leaves, fast_mode=True)


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_module_gradgradcheck_with_regularisation_masks(cell_name):
    """Zoneout, recurrent dropout and DropConnect in training: the masks (re-drawn from the same
    seed at each call) are constants, and the weight-dropped weight_hh is differentiated through."""
    torch.manual_seed(0)
    gen = torch.Generator()
    module = MODULES[cell_name](I, H, num_layers=2, engine="fused", dtype=F64, zoneout=0.3, dropout_state=0.3,
                                weight_drop=0.3, generator=gen).train()
    inner = _module_fn(module, with_state=False)

    def fn(*ts):
        gen.manual_seed(1)
        return inner(*ts)

    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    leaves = [p.detach().clone().requires_grad_() for p in module.parameters()] + [x]
    assert torch.autograd.gradgradcheck(fn, leaves, fast_mode=True)


def test_module_gradient_penalty_trains():
    """A gradient penalty (the use case) backpropagates into every parameter."""
    torch.manual_seed(0)
    module = gatedrnn.LSTM(I, H, num_layers=2, proj_size=P, engine="fused", dtype=F64)
    x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
    out, _ = module(x)
    (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    gx.square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in module.parameters())


STEP_CASES = [(c, {}) for c in CELL_MODULES] + [("lstm", {"proj_size": P, "layer_norm": True}),
                                                 ("mogrifier", {"rounds": 3, "proj_size": P})]


@pytest.mark.parametrize("case", STEP_CASES, ids=[_id(c) for c in STEP_CASES])
def test_single_step_cell_gradgradcheck(case):
    cell_name, options = case
    torch.manual_seed(0)
    step = CELL_MODULES[cell_name](I, H, dtype=F64, **options)
    names = [n for n, _ in step.named_parameters()]
    x = torch.randn(B, I, dtype=F64, requires_grad=True)
    hx = plausible(step, [(0.5 * torch.randn(B, s, dtype=F64)).requires_grad_() for s in step.state_sizes])
    n = len(names)

    def fn(*ts):
        state = ts[n + 1 :]
        out = torch.func.functional_call(step, dict(zip(names, ts[:n])), (ts[n], tuple(state) if len(state) > 1 else state[0]))
        return tuple(step.cell.observed_state(TORCH_OPS, out if isinstance(out, tuple) else (out,)))

    leaves = [p.detach().clone().requires_grad_() for p in step.parameters()] + [x, *hx]
    assert torch.autograd.gradgradcheck(fn, leaves, fast_mode=True)


class _Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_first_order_backward_does_not_build_a_graph(cell_name, monkeypatch):
    counter = _Counter(function.twin_grads)
    monkeypatch.setattr(function, "twin_grads", counter)
    module = MODULES[cell_name](I, H, num_layers=2, engine="fused")
    out, _ = module(torch.randn(T, B, I))
    out.sum().backward()
    assert counter.calls == 0
    assert all(not p.grad.requires_grad for p in module.parameters())
    out, _ = module(torch.randn(T, B, I))
    torch.autograd.grad(out.sum(), list(module.parameters()), create_graph=True)
    assert counter.calls == 2  # one twin recomputation per layer


def test_backward_twice_with_retain_graph():
    """A second backward over a retained graph gives the same gradients as the first."""
    torch.manual_seed(0)
    module = gatedrnn.LSTM(I, H, engine="fused", dtype=F64)
    out, _ = module(torch.randn(T, B, I, dtype=F64))
    first = torch.autograd.grad(out.sum(), list(module.parameters()), retain_graph=True)
    second = torch.autograd.grad(out.sum(), list(module.parameters()))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_keep_mask_requiring_grad_is_refused():
    cell, names, leaves = _layer_inputs("lstm", {})
    keep = (torch.full((T, B, H), 0.5, dtype=F64, requires_grad=True), None)
    with pytest.raises(ValueError, match="keep"):
        _layer_fn(cell, names, keep)(*leaves)


def test_auto_engine_second_derivatives_match_fused():
    """engine="auto" hands plain configurations to torch's kernels, whose CPU path is itself
    twice differentiable: the same second derivatives as the fused engine. (cuDNN's is not: on
    CUDA, use engine="fused" for them.)"""
    results = []
    for engine in ("auto", "fused"):
        torch.manual_seed(0)
        module = gatedrnn.LSTM(I, H, num_layers=2, proj_size=P, dtype=F64, engine=engine)
        x = torch.randn(T, B, I, dtype=F64, requires_grad=True)
        out, _ = module(x)
        (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        gx.square().sum().backward()
        results.append([p.grad for p in module.parameters()])
    for a, b in zip(*results):
        # float64, the same sums in another order
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
