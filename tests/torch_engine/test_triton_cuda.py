"""The Triton engine on a CUDA device: compiled kernels (not the interpreter), CUDA graphs and
autocast. Skipped without a GPU; benchmarks/gpu.sh runs this module on its own (the interpreter
tests of test_triton.py, run first in the same process, would build the kernels for the CPU).

Against the fused engine on the same device: float64 to 1e-10 for every declared case and mask
kind (generated from ``HANDLES``, as on CPU); float32 with TF32 off to float32 rounding; graph
replays equal to eager launches, across new inputs and a replaced parameter; bfloat16 and float16
autocast to half-precision rounding, with float32 states.
"""
import os
import sys

import pytest
import torch

pytest.importorskip("triton")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1" or getattr(sys.modules.get("gatedrnn.torch_engine.triton.common"),
                                                      "INTERPRETED", False):
    pytest.skip("the Triton kernels are built for the interpreter in this process", allow_module_level=True)

from gatedrnn.torch_engine import triton as engine  # noqa: E402
from gatedrnn.torch_engine.functional import run_layer  # noqa: E402
from gatedrnn.torch_engine.triton import graphs  # noqa: E402

from .test_triton import MASK_KINDS, _id, declared_cases, make_inputs, make_masks, mask_cases, outputs_and_grads  # noqa: E402

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def no_tf32(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def to_cuda(params, x, state, keep=None, dtype=None):
    move = lambda t: None if t is None else t.to(CUDA, dtype or t.dtype)  # noqa: E731
    keep = None if keep is None else tuple(move(k) for k in keep)
    return {k: move(v) for k, v in params.items()}, move(x), tuple(move(s) for s in state), keep


def compare(cell, params, x, state, keep=None, rtol=1e-10, atol=1e-12):
    assert engine.refusal(cell, params, x, keep, state) is None
    out, grads = outputs_and_grads(lambda c, p, x_, s: engine.run(c, p, x_, s, keep), cell, params, x, state)
    out_ref, grads_ref = outputs_and_grads(lambda c, p, x_, s: run_layer(c, p, x_, s, keep, engine="fused"),
                                           cell, params, x, state)
    for a, b in zip(out, out_ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    for key, ref in grads_ref.items():
        torch.testing.assert_close(grads[key], ref, rtol=rtol * 10, atol=atol * 10, msg=key)


@pytest.mark.parametrize("case", declared_cases(), ids=_id)
def test_float64_matches_fused(case):
    cell, *rest = make_inputs(*case)
    compare(cell, *to_cuda(*rest))


@pytest.mark.parametrize("case", mask_cases(), ids=_id)
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_float64_match_fused(case, kind):
    cell, params, x, state = make_inputs(*case)
    params, keep = make_masks(kind, cell, params, x)
    compare(cell, *to_cuda(params, x, state, keep))


@pytest.mark.parametrize("name", list(engine.HANDLES))
def test_float32_matches_fused(name):
    cell, *rest = make_inputs(name, {})
    compare(cell, *to_cuda(*rest, dtype=torch.float32), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", list(engine.HANDLES))
def test_graph_replays_match_eager(name, monkeypatch):
    """Captured once, replayed for new inputs and for a parameter whose storage was replaced; the
    same as launching every kernel eagerly (graphs off), and no capture failed."""
    cell, params, x, state = make_inputs(name, {})
    params, x, state, _ = to_cuda(params, x, state, dtype=torch.float32)
    graphs.clear()
    runs = []
    for graphed in (False, True):
        monkeypatch.setattr(graphs, "ENABLED", graphed)
        p = dict(params)
        first = outputs_and_grads(lambda c, p_, x_, s: engine.run(c, p_, x_, s), cell, p, x, state)
        p["weight_hh"] = p["weight_hh"] * 0.5  # a new storage: no new capture, the new values used
        second = outputs_and_grads(lambda c, p_, x_, s: engine.run(c, p_, x_, s), cell, p, x * 2, state)
        runs.append((first, second))
    assert not graphs._failed, "a capture failed"
    assert len(graphs._graphs) == 2, "expected one forward and one backward graph"
    for (out_e, g_e), (out_g, g_g) in zip(*runs):
        for a, b in zip(out_g, out_e):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        for key in g_e:
            torch.testing.assert_close(g_g[key], g_e[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", list(engine.HANDLES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_autocast(name, dtype):
    """Products in half precision, states float32: close to the fused engine under the same
    autocast, and to float32, within half precision's rounding."""
    cell, params, x, state = make_inputs(name, {})
    params, x, state, _ = to_cuda(params, x, state, dtype=torch.float32)

    def under_autocast(fn):
        def run(c, p, x_, s):
            with torch.autocast("cuda", dtype=dtype):
                return fn(c, p, x_, s)
        return run

    out, grads = outputs_and_grads(under_autocast(engine.run), cell, params, x, state)
    assert out[0].dtype == torch.float32 and all(s.dtype == torch.float32 for s in out[1:])
    out_ref, grads_ref = outputs_and_grads(under_autocast(lambda c, p, x_, s: run_layer(c, p, x_, s, engine="fused")),
                                           cell, params, x, state)
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    for a, b in zip(out, out_ref):
        torch.testing.assert_close(a, b.float(), rtol=tol, atol=tol)
    for key, ref in grads_ref.items():
        assert torch.isfinite(grads[key]).all(), key
        torch.testing.assert_close(grads[key].float(), ref.float(), rtol=5 * tol, atol=5 * tol, msg=key)
