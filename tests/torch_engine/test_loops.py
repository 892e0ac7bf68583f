"""The specialised loops (torch_engine/loops/) against the generic fused loop and the autograd
twin, in float64: outputs, final states and every gradient, for each configuration they take,
through the shared ``function.LoopFunction`` (retained graphs, double backward)."""
import threading

import pytest
import torch

from gatedrnn.torch_engine import buffers, capability, products
from gatedrnn.torch_engine.autograd_loop import autograd_layer
from gatedrnn.torch_engine.loops import mogrifier

from .loop_cases import (
    CASES,
    MASK_CASES,
    MASK_KINDS,
    _id,
    autograd_twin,
    fast_path,
    generic_path,
    make_inputs,
    make_masks,
    outputs_and_grads,
    run_fast,
)


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


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain"])
def test_kept_memory_gives_the_same_gradients(onednn, monkeypatch):
    """Every backward temporary from ``buffers.scratch``'s kept memory and every saved buffer from
    ``buffers.carve``'s recycled allocations (both thresholds lowered to 0): each configuration's
    outputs and gradients equal the autograd twin's on its first and second run, with the other
    configurations (other cells, shapes and dtypes) run in between, so every kept buffer is reused
    at another size; the outputs of every run, kept to the end, are unchanged by the runs after
    them (recycling never hands out memory a tensor still uses); float32 with every product on
    oneDNN where it runs (``onednn``: the transposed gradient of the weight gradients is kept too)."""
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "RECYCLE_MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "SCRATCH_MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "_kept", threading.local())
    monkeypatch.setattr(buffers, "_pool", [])
    allocated, carved = [], []
    allocate, carve = buffers._allocate, buffers.carve
    monkeypatch.setattr(buffers, "_allocate", lambda *a: allocated.append(1) or allocate(*a))
    monkeypatch.setattr(buffers, "carve", lambda *a: carved.append(1) or carve(*a))
    monkeypatch.setattr(products, "ONEDNN", onednn)
    monkeypatch.setattr(products, "ONEDNN_MIN_WEIGHT", 0)
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN", 0)
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN_THREADED", 0)
    monkeypatch.setattr(products, "ONEDNN_MANY", onednn)
    kept_outputs = []
    for dtype, rtol, atol in ((torch.float64, 1e-9, 1e-11), (torch.float32, 1e-3, 1e-4)):
        for _ in range(2):
            for case in CASES:
                cell, params, x, state = make_inputs(*case)
                params = {k: v.to(dtype) for k, v in params.items()}
                x, state = x.to(dtype), tuple(v.to(dtype) for v in state)
                out_fast, g_fast = outputs_and_grads(fast_path, cell, params, x, state)
                out_ref, g_ref = outputs_and_grads(autograd_twin, cell, params, x, state)
                for a, b in zip(out_fast, out_ref):
                    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
                for key in g_ref:
                    torch.testing.assert_close(g_fast[key], g_ref[key], rtol=rtol, atol=atol, msg=f"{_id(case)} {key}")
                kept_outputs += [(a, a.clone()) for a in out_fast]
    for a, copy in kept_outputs:
        assert torch.equal(a, copy)
    assert buffers._kept.buffers  # the temporaries were kept
    assert len(allocated) < len(carved)  # some saved buffers came from recycled memory


@pytest.mark.parametrize("case", MASK_CASES, ids=[_id(c) for c in MASK_CASES])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_match_generic_and_autograd(case, kind):
    """Zoneout, padding and state dropout run in the specialised loops, equal to both twins."""
    cell, params, x, state = make_inputs(*case)
    if "state-dropout" in kind and not cell.has_recurrent_product:
        pytest.skip(f"{cell.name} has no recurrent product for state dropout to act on")
    params, keep = make_masks(kind, cell, params, x)
    if keep is not None and not getattr(capability.loop_for(cell), "takes_keep", True):
        pytest.skip(f"{cell.name}'s loop leaves keep masks to the generic loop")
    assert capability.supports(cell, params, x, keep, state)
    out_fast, g_fast = outputs_and_grads(lambda c, p, x_, s: run_fast(c, p, x_, s, keep), cell, params, x, state)
    twins = (lambda c, p, x_, s: generic_path(c, p, x_, s, keep), lambda c, p, x_, s: autograd_layer(c, p, x_, s, keep))
    for twin in twins:
        out_ref, g_ref = outputs_and_grads(twin, cell, params, x, state)
        for a, b in zip(out_fast, out_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        for key in g_ref:
            torch.testing.assert_close(g_fast[key], g_ref[key], rtol=1e-9, atol=1e-11, msg=key)
    with torch.no_grad():  # inference reuses its buffers and must give the same
        y, sn = run_fast(cell, params, x, state, keep)
    torch.testing.assert_close(y, out_fast[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(sn, out_fast[1:]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}),
                                  ("mogrifier", {"rounds": 5}), ("lstm", {"layer_norm": True}),
                                  ("gru", {"layer_norm": True}), ("mingru", {}), ("minlstm", {}), ("slstm", {}), ("indrnn", {}),
                                  ("slstm", {"num_heads": 2})], ids=_id)
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "plain"])
def test_float32_matches_float64(case, onednn, monkeypatch):
    """float32 is where the oneDNN products run (when the build and processor have them), the
    per-step ones and those of all steps at once; ``ONEDNN = False`` is the plain fallback.
    float32 rounding bounds the tolerances."""
    monkeypatch.setattr(products, "ONEDNN", onednn)
    monkeypatch.setattr(products, "ONEDNN_MIN_WEIGHT", 0)  # these small weights too
    monkeypatch.setattr(products, "ONEDNN_MANY", onednn)  # and the products of all steps, on any processor
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN", 0)  # the weight gradients among them
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN_THREADED", 0)
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
            y, sn = run_fast(cell, params, x, state)
        y_ref, sn_ref = autograd_layer(cell, params, x, state)
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        for a, b in zip(sn, sn_ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_double_backward_goes_through_the_twin():
    cell, params, x, state = make_inputs("lstm", {}, T=3, B=2, I=3, H=4)
    x = x.requires_grad_()
    p = {k: v.requires_grad_() for k, v in params.items()}
    assert capability.supports(cell, p, x)
    torch.autograd.gradgradcheck(lambda x_, w: run_fast(cell, {**p, "weight_hh": w}, x_, state)[0],
                                 (x, p["weight_hh"]))


@pytest.mark.parametrize("case", [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}),
                                  ("mogrifier", {"rounds": 3})], ids=_id)
def test_second_backward_with_retained_graph(case):
    """The backward leaves the saved buffers as they were: a retained graph runs it again."""
    cell, params, x, state = make_inputs(*case)
    w = params["weight_hh"].requires_grad_()
    y, _ = run_fast(cell, params, x, state)
    (g1,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (g2,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (g3,) = torch.autograd.grad(y.sum(), w, create_graph=True)  # through the twin
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    torch.testing.assert_close(g3, g1, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 3])
@pytest.mark.parametrize("case", [("mogrifier", {"rounds": 5}), ("mogrifier", {"rounds": 4, "rank": 2})], ids=_id)
def test_mogrifier_backward_in_chunks(case, chunk, monkeypatch):
    """The Mogrifier's backward sums its weight gradients chunk by chunk of steps: chunks that
    do not divide ``T`` give the gradients of the whole sequence at once."""
    monkeypatch.setattr(mogrifier, "CHUNK", chunk)
    cell, params, x, state = make_inputs(*case, T=7)
    params, keep = make_masks("zoneout+state-dropout", cell, params, x)
    _, g_fast = outputs_and_grads(lambda c, p, x_, s: run_fast(c, p, x_, s, keep), cell, params, x, state)
    _, g_ref = outputs_and_grads(lambda c, p, x_, s: autograd_layer(c, p, x_, s, keep), cell, params, x, state)
    for key in g_ref:
        torch.testing.assert_close(g_fast[key], g_ref[key], rtol=1e-9, atol=1e-11, msg=key)


@pytest.mark.parametrize("rounds,kept", [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)])
def test_mogrifier_keeps_only_the_x_rounds_its_backward_reads(rounds, kept):
    """With more x rounds than h rounds (odd ``rounds``) no ``R_k`` reads the last ``x``: it is
    written into ``XH`` alone, and ``Xm`` keeps one round fewer (one round keeps its own slot);
    the gradients that then read ``Xm`` are held to the twins by the tests above."""
    cell, params, x, state = make_inputs("mogrifier", {"rounds": rounds})
    _, _, saved = mogrifier.MogrifierLoop.forward(cell, params, x, state, save=True)
    assert mogrifier.x_rounds_kept((rounds + 1) // 2, rounds // 2) == kept
    assert saved["Xm"].shape[:2] == (kept, x.shape[0])
