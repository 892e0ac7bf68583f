"""The hand-specialised loops (torch_engine/fast.py) against the generic fused path and the
autograd twin, in float64: outputs, final states and every gradient, for each configuration
they take; and the configurations they must leave to the generic path."""
import math

import pytest
import torch

from gatedrnn.cells import make_cell
from gatedrnn.torch_engine import fast
from gatedrnn.torch_engine.functional import reference_layer, run_layer

from .stepping import assert_steps_match, module_pair

CASES = [
    ("lstm", {}), ("lstm", {"forget_bias": 1.0}), ("lstm", {"bias": False}),
    ("lstm", {"bias": False, "forget_bias": 0.5}),
    ("peephole", {}), ("peephole", {"bias": False}), ("cifg", {}), ("cifg", {"forget_bias": 1.0}),
    ("gru", {}), ("gru", {"bias": False}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}),
    ("rnn", {"bias": False}),
    *[("mogrifier", {"rounds": r}) for r in range(0, 6)], ("mogrifier", {"rank": 2}),
    ("mogrifier", {"rounds": 4, "rank": 3, "bias": False}),
    ("lstm", {"layer_norm": True}), ("lstm", {"layer_norm": True, "bias": False, "forget_bias": 1.0}),
    ("peephole", {"layer_norm": True}), ("cifg", {"layer_norm": True}),
    ("gru", {"layer_norm": True}), ("gru", {"layer_norm": True, "bias": False}),
    ("rnn", {"layer_norm": True}), ("rnn", {"layer_norm": True, "nonlinearity": "relu"}),
    ("mogrifier", {"rounds": 0, "layer_norm": True}),
]
# with zoneout-like keep masks and state dropout (mask_hh)
MASK_CASES = [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}),
              ("rnn", {"nonlinearity": "relu"}), ("mogrifier", {"rounds": 3}), ("mogrifier", {"rounds": 4, "rank": 2}),
              ("lstm", {"layer_norm": True}), ("peephole", {"layer_norm": True}), ("gru", {"layer_norm": True}),
              ("rnn", {"layer_norm": True})]
MASK_KINDS = ("zoneout", "zoneout-h", "expectation", "padding", "state-dropout", "zoneout+state-dropout")


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def make_inputs(name, options, T=5, B=3, I=4, H=6, seed=0):
    cell = make_cell(name, **options)
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for s in cell.param_spec(I, H):
        params[s.name] = (torch.rand(s.shape, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(H)
    if cell.name in ("rnn",) and cell.nonlinearity == "relu":
        params["weight_hh"] = params["weight_hh"] * 0.5
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(B, size, generator=gen, dtype=torch.float64) * 0.5 for size in cell.state_sizes(H))
    return cell, params, x, state


def make_masks(kind, cell, params, x, seed=2):
    """``(params, keep)`` for one kind of mask: zoneout's random 0/1 keep masks (on every state
    element, or on ``h`` alone), their expectation in evaluation, a padded batch's ``(T, B, 1)``
    masks, or state dropout's ``mask_hh``."""
    T, B, _ = x.shape
    gen = torch.Generator().manual_seed(seed)
    sizes = [s.shape[-1] for s in make_inputs(cell.name, cell.config, T=T, B=B)[3]]
    keep = None
    if "zoneout" in kind:
        keep = tuple((torch.rand(T, B, n, generator=gen) < 0.3).double() for n in sizes)
        if kind.startswith("zoneout-h"):
            keep = (keep[0],) + (None,) * (len(sizes) - 1)
    elif kind == "expectation":
        keep = tuple(torch.full((T, 1, 1), 0.25, dtype=torch.float64) for _ in sizes)
    elif kind == "padding":
        lengths = torch.tensor([T, T - 2, 1])[:B]
        valid = (torch.arange(T)[:, None] < lengths[None, :]).double()[..., None]
        keep = tuple(1.0 - valid for _ in sizes)
    if "state-dropout" in kind:
        R = params["weight_hh"].shape[1]
        mask = (torch.rand(B, R, generator=gen) >= 0.4).double() / 0.6
        params = {**params, "mask_hh": mask}
    return params, keep


def outputs_and_grads(fn, cell, params, x, state, seed=1):
    consts = {k: v for k, v in params.items() if k.startswith("mask_")}  # not parameters
    params = {k: v for k, v in params.items() if k not in consts}
    leaves = [t.clone().requires_grad_() for t in (*params.values(), x, *state)]
    p = {**dict(zip(params, leaves[: len(params)])), **consts}
    y, state_n = fn(cell, p, leaves[len(params)], tuple(leaves[len(params) + 1 :]))
    gen = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.dtype)).sum()
    for s in state_n:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=torch.float64).to(s.dtype)).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = [*params, "x", *(f"state{k}" for k in range(len(state)))]
    return [y.detach(), *(s.detach() for s in state_n)], dict(zip(names, grads))


def fast_path(cell, p, x, state):
    assert fast.supports(cell, p, x), "expected the specialised loop to take this configuration"
    return fast.run_fast(cell, p, x, state)


def generic_path(cell, p, x, state, keep=None):
    enabled, fast.ENABLED = fast.ENABLED, False
    try:
        return run_layer(cell, p, x, state, keep, engine="fused")
    finally:
        fast.ENABLED = enabled


def autograd_twin(cell, p, x, state):
    return reference_layer(cell, p, x, state)


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_fast_matches_generic_and_autograd(case):
    cell, params, x, state = make_inputs(*case)
    out_fast, g_fast = outputs_and_grads(fast_path, cell, params, x, state)
    for twin in (generic_path, autograd_twin):
        out_ref, g_ref = outputs_and_grads(twin, cell, params, x, state)
        for a, b in zip(out_fast, out_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert set(g_fast) == set(g_ref)
        for key in g_ref:
            assert g_fast[key] is not None, key
            torch.testing.assert_close(g_fast[key], g_ref[key], rtol=1e-9, atol=1e-11, msg=f"{key} vs {twin.__name__}")


@pytest.mark.parametrize("case", MASK_CASES, ids=[_id(c) for c in MASK_CASES])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_match_generic_and_autograd(case, kind):
    """Zoneout, padding and state dropout run in the specialised loops, equal to both twins."""
    cell, params, x, state = make_inputs(*case)
    params, keep = make_masks(kind, cell, params, x)
    assert fast.supports(cell, params, x, keep, state)
    out_fast, g_fast = outputs_and_grads(lambda c, p, x_, s: fast.run_fast(c, p, x_, s, keep), cell, params, x, state)
    twins = (lambda c, p, x_, s: generic_path(c, p, x_, s, keep), lambda c, p, x_, s: reference_layer(c, p, x_, s, keep))
    for twin in twins:
        out_ref, g_ref = outputs_and_grads(twin, cell, params, x, state)
        for a, b in zip(out_fast, out_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        for key in g_ref:
            torch.testing.assert_close(g_fast[key], g_ref[key], rtol=1e-9, atol=1e-11, msg=key)
    with torch.no_grad():  # inference reuses its buffers and must give the same
        y, sn = fast.run_fast(cell, params, x, state, keep)
    torch.testing.assert_close(y, out_fast[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(sn, out_fast[1:]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}),
                                  ("mogrifier", {"rounds": 5}), ("lstm", {"layer_norm": True}),
                                  ("gru", {"layer_norm": True})], ids=_id)
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain"])
def test_float32_matches_float64(case, onednn, monkeypatch):
    """float32 is where the oneDNN products run (when the build and processor have them);
    ``ONEDNN = False`` is the plain fallback. float32 rounding bounds the tolerances."""
    monkeypatch.setattr(fast, "ONEDNN", onednn)
    monkeypatch.setattr(fast, "ONEDNN_MIN_WEIGHT", 0)  # these small weights too
    cell, params, x, state = make_inputs(*case, T=4, B=5, I=8, H=16)
    out64, g64 = outputs_and_grads(fast_path, cell, params, x, state)
    p32 = {k: v.float() for k, v in params.items()}
    out32, g32 = outputs_and_grads(fast_path, cell, p32, x.float(), tuple(s.float() for s in state))
    for a, b in zip(out32, out64):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)
    for key in g64:
        torch.testing.assert_close(g32[key].double(), g64[key], rtol=1e-3, atol=1e-4, msg=key)


def test_no_grad_forward_matches():
    for case in (("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}), ("mogrifier", {})):
        cell, params, x, state = make_inputs(*case)
        with torch.no_grad():
            y, sn = fast.run_fast(cell, params, x, state)
        y_ref, sn_ref = reference_layer(cell, params, x, state)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        for a, b in zip(sn, sn_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_double_backward_goes_through_the_twin():
    cell, params, x, state = make_inputs("lstm", {}, T=3, B=2, I=3, H=4)
    x = x.requires_grad_()
    p = {k: v.requires_grad_() for k, v in params.items()}
    assert fast.supports(cell, p, x)
    torch.autograd.gradgradcheck(lambda x_, w: fast.run_fast(cell, {**p, "weight_hh": w}, x_, state)[0],
                                 (x, p["weight_hh"]))


@pytest.mark.parametrize("case", [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}),
                                  ("mogrifier", {"rounds": 3})], ids=_id)
def test_second_backward_with_retained_graph(case):
    """The backward leaves the saved buffers as they were: a retained graph runs it again."""
    cell, params, x, state = make_inputs(*case)
    w = params["weight_hh"].requires_grad_()
    y, _ = fast.run_fast(cell, params, x, state)
    (g1,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (g2,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (g3,) = torch.autograd.grad(y.sum(), w, create_graph=True)  # through the twin
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    torch.testing.assert_close(g3, g1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [("lstm", {"proj_size": 2}), ("lstm", {"proj_size": 2, "layer_norm": True}),
                                  ("lstm", {"drop_gates": ("i",)}), ("lstm", {"output_activation": "identity"}),
                                  ("peephole", {"input_activation": "identity"}),
                                  ("mogrifier", {"layer_norm": True}), ("mogrifier", {"proj_size": 2})], ids=_id)
def test_other_configurations_stay_generic(case):
    cell, params, x, state = make_inputs(*case)
    assert not fast.supports(cell, params, x)


def test_odd_masks_stay_generic():
    """Masks the loops do not take: on the input (``mask_ih``), of another dtype, a keep mask
    that is not ``(T, B|1, size|1)``, a state-dropout mask of another shape."""
    cell, params, x, state = make_inputs("lstm", {})
    T, B = x.shape[:2]
    assert fast.supports(cell, params, x, (torch.zeros(T, B, 1, dtype=x.dtype),) * 2)
    assert not fast.supports(cell, {**params, "mask_ih": torch.ones(B, 4, dtype=x.dtype)}, x)
    assert not fast.supports(cell, params, x, (torch.zeros(T, B, 1, dtype=torch.float32),) * 2)
    assert not fast.supports(cell, params, x, (torch.zeros(B, 1, dtype=x.dtype),) * 2)
    assert not fast.supports(cell, params, x, (torch.zeros(T + 1, B, 1, dtype=x.dtype),) * 2)
    assert not fast.supports(cell, {**params, "mask_hh": torch.ones(1, 6, dtype=x.dtype)}, x)
    assert fast.supports(cell, {**params, "mask_hh": torch.ones(B, 6, dtype=x.dtype)}, x)


def test_switch_off(monkeypatch):
    cell, params, x, state = make_inputs("lstm", {})
    monkeypatch.setattr(fast, "ENABLED", False)
    assert not fast.supports(cell, params, x)


def test_product_kernels_agree(monkeypatch):
    """oneDNN's packed product (where this build has it) and the torch.addmm fallback agree."""
    gen = torch.Generator().manual_seed(0)
    w, x, add = (torch.randn(s, generator=gen) for s in ((12, 7), (5, 7), (5, 12)))
    bias = torch.randn(12, generator=gen)
    expected = x @ w.T
    monkeypatch.setattr(fast, "ONEDNN_MIN_WEIGHT", 0)
    products = [fast.Product(w, 5)]
    monkeypatch.setattr(fast, "ONEDNN", False)
    products.append(fast.Product(w, 5))
    assert products[1].packed is None
    for prod in products:
        torch.testing.assert_close(prod(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prod(x, bias), expected + bias, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prod(x, add), expected + add, rtol=1e-5, atol=1e-5)


def test_small_weights_run_on_mkl():
    """Below ``ONEDNN_MIN_WEIGHT`` elements a product keeps the plain kernel; from it on, oneDNN
    where this build and processor take it."""
    small = torch.zeros(fast.ONEDNN_MIN_WEIGHT // 512 - 1, 512)
    big = torch.zeros(fast.ONEDNN_MIN_WEIGHT // 512, 512)
    assert fast.Product(small, 32).packed is None
    assert (fast.Product(big, 32).packed is not None) == fast._onednn_usable(big)
    assert fast._onednn_usable(big) == (torch.backends.mkldnn.is_available()
                                        and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


@pytest.mark.parametrize("chunk", [1, 2, 3])
@pytest.mark.parametrize("case", [("mogrifier", {"rounds": 5}), ("mogrifier", {"rounds": 4, "rank": 2})], ids=_id)
def test_mogrifier_backward_in_chunks(case, chunk, monkeypatch):
    """The Mogrifier's backward sums its weight gradients chunk by chunk of steps: chunks that
    do not divide ``T`` give the gradients of the whole sequence at once."""
    monkeypatch.setattr(fast, "CHUNK", chunk)
    cell, params, x, state = make_inputs(*case, T=7)
    params, keep = make_masks("zoneout+state-dropout", cell, params, x)
    _, g_fast = outputs_and_grads(lambda c, p, x_, s: fast.run_fast(c, p, x_, s, keep), cell, params, x, state)
    _, g_ref = outputs_and_grads(lambda c, p, x_, s: reference_layer(c, p, x_, s, keep), cell, params, x, state)
    for key in g_ref:
        torch.testing.assert_close(g_fast[key], g_ref[key], rtol=1e-9, atol=1e-11, msg=key)


def test_masks_that_require_grad_are_refused():
    """The fused engine treats masks as constants: one that requires grad would get no gradient
    there (and a gradient from the autograd twin), so it is refused in every case."""
    cell, params, x, state = make_inputs("lstm", {})
    T, B = x.shape[:2]
    keep = (torch.zeros(T, B, 1, dtype=x.dtype, requires_grad=True),) * 2
    with pytest.raises(ValueError, match="keep masks are constants"):
        run_layer(cell, params, x, state, keep)
    mask = torch.ones(B, 6, dtype=x.dtype, requires_grad=True)
    with pytest.raises(ValueError, match="mask_hh .* requires grad"):
        run_layer(cell, {**params, "mask_hh": mask}, x, state)
    with torch.no_grad():  # nothing to differentiate: accepted
        run_layer(cell, {**params, "mask_hh": mask}, x, state)
    y, _ = run_layer(cell, {**params, "mask_hh": mask}, x, state, engine="reference")
    assert torch.autograd.grad(y.sum(), mask)[0].abs().sum() > 0  # the twin differentiates it


STEP_TAKEN = [("lstm", {"forget_bias": 1.0}), ("lstm", {"bias": False, "forget_bias": 0.5}), ("peephole", {}),
              ("peephole", {"bias": False}), ("peephole", {"forget_bias_init": 1.0}), ("cifg", {}),
              ("cifg", {"forget_bias": 1.0}), ("mogrifier", {}), ("mogrifier", {"rounds": 4, "rank": 2}),
              ("mogrifier", {"rounds": 1, "bias": False}), ("mogrifier", {"rounds": 0})]
STEP_LEFT = [("lstm", {"layer_norm": True}), ("lstm", {"proj_size": 3}), ("lstm", {"drop_gates": ("i",)}),
             ("lstm", {"output_activation": "identity"}), ("peephole", {"layer_norm": True}),
             ("mogrifier", {"layer_norm": True}), ("gru", {}), ("rnn", {})]


@pytest.mark.parametrize("case", STEP_TAKEN, ids=_id)
def test_lstm_step_equals_the_cells_step(case):
    """``lstm_step`` behind the modules' ``step()`` against the cell's own step (the reference
    engine's), four steps from a random state: outputs and every gradient, float64."""
    fast_module, slow = module_pair(*case)
    assert fast.lstm_step(fast_module.cell, fast_module._step_params()[0][0]) is not None
    assert_steps_match(fast_module, slow)


@pytest.mark.parametrize("case", STEP_LEFT, ids=_id)
def test_lstm_step_leaves_other_configurations_to_the_cell(case):
    cell = make_cell(case[0], **case[1])
    params = {s.name: torch.zeros(s.shape) for s in cell.param_spec(5, 6)}
    assert fast.lstm_step(cell, params) is None


def test_lstm_step_sees_a_replaced_data():
    """``param.data = ...`` keeps the parameter object (so ``step()``'s cache stays) but swaps its
    storage: the next step must compute with the new values."""
    fast_module, slow = module_pair("peephole", {})
    x = torch.randn(3, 5, dtype=torch.float64)
    fast_module.step(x)
    for module in (fast_module, slow):
        for name in ("weight_hh_l0", "weight_peephole_l0"):
            param = getattr(module, name)
            param.data = param.data * 2.0
    hx = tuple(torch.randn(2, 3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) for _ in range(2))
    with torch.no_grad():
        torch.testing.assert_close(fast_module.step(x, hx)[0], slow.step(x, hx)[0], rtol=1e-12, atol=1e-12)
