"""Half precision: a bf16 autocast training step (CPU) matches float32, in both engines, with the
products in bf16 and the cell state and weight-gradient sums in float32; fp16 autocast on CUDA
where a GPU is present.

Tolerances. bf16 keeps 8 significant bits: one rounding moves a value by up to 2^-9 (2e-3)
relative, about 1e-3 on average. Under autocast a gradient passes through several roundings (the
two operands of each forward product, the two of each backward product; the Mogrifier chains
2 * rounds more gating products), so gradients are compared norm-wise with 2e-2 (about ten
roundings' worth); the loss, a mean over every output, averages its errors down: 2e-3.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils._python_dispatch import TorchDispatchMode

import gatedrnn
from gatedrnn.torch_engine.cell_modules import CELL_MODULES
from gatedrnn.torch_engine import native as native_module
from gatedrnn.torch_engine.modules import MODULES

from .stepping import plausible

I, H, T, B = 16, 16, 6, 4
BF16 = torch.bfloat16
REAL_NATIVE = native_module.native_bf16()

CASES = [
    *[(c, {}) for c in MODULES],
    ("lstm", {"proj_size": 8}), ("lstm", {"bias": False}), ("rnn", {"bias": False}),
    ("lstm", {"forget_bias": 1.0, "drop_gates": ("i",)}), ("peephole", {"proj_size": 8}),
    ("mogrifier", {"proj_size": 8, "rank": 4}),
]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def _step(module, x, hx, target, device_type="cpu", dtype=None):
    """One training step's loss and gradients, under autocast when ``dtype`` is given."""
    module.zero_grad()
    with torch.autocast(device_type, dtype=dtype or BF16, enabled=dtype is not None):
        out, _ = module(x, hx)
        loss = torch.nn.functional.mse_loss(out.float(), target)
    loss.backward()
    return out, loss.item(), {n: p.grad.clone() for n, p in module.named_parameters()}


def _data(module, seed=0, T=T, device=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=gen).to(device)
    target = torch.randn(T, B, module.num_directions * module.state_sizes[0], generator=gen).to(device)
    n = module.num_layers * module.num_directions
    hx = plausible(module, tuple(torch.randn(n, B, s, generator=gen).to(device) for s in module.state_sizes))
    return x, (hx if module.cell.has_cell_state else hx[0]), target


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("engine", ["fused", "autograd", "auto"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_bf16_training_step_matches_float32(case, engine):
    """``auto``: torch's bf16 kernels where the processor has bf16 arithmetic and ``torch.nn``
    computes the configuration (native.native_bf16), the fused engine elsewhere."""
    cell_name, options = case
    torch.manual_seed(0)
    module = MODULES[cell_name](I, H, num_layers=2, engine=engine, **options)
    x, hx, target = _data(module)
    _, loss32, grads32 = _step(module, x, hx, target)
    out, loss16, grads16 = _step(module, x, hx, target, dtype=BF16)
    assert out.dtype == torch.float32  # h (and c) stay in the initial state's dtype
    assert abs(loss16 - loss32) <= 2e-3 * loss32  # see the module docstring
    assert loss16 != loss32  # the products did run in bf16
    for name, g in grads16.items():
        assert g.dtype == torch.float32, name  # gradients in the parameters' dtype
        assert _rel(g, grads32[name]) < 2e-2, name  # see the module docstring


@pytest.mark.parametrize("cell_name", [c for c in MODULES if "layer_norm" in MODULES[c](1, 1).cell.options])
def test_bf16_layer_norm_within_its_conditioning(cell_name):
    """Layer norm's gradients here are ill-conditioned: rounding only the weights and the input to
    bf16, computing in float32, already moves them by 1e-2 to 3e-1 (they are sums that cancel).
    The autocast step rounds more operands (each step's h, the backward's products), and measured
    at most 6x that spread; 10x is the bound, with the loss held to the docstring's 2e-3."""
    torch.manual_seed(0)
    module = MODULES[cell_name](I, H, num_layers=2, engine="fused", layer_norm=True)
    x, hx, target = _data(module)
    _, loss32, grads32 = _step(module, x, hx, target)
    _, loss16, grads16 = _step(module, x, hx, target, dtype=BF16)
    rounded = copy.deepcopy(module)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(BF16).float())
    _, _, grads_r = _step(rounded, x.to(BF16).float(), hx, target)
    assert abs(loss16 - loss32) <= 2e-3 * loss32
    for name, g in grads16.items():
        spread = max(_rel(grads_r[name], grads32[name]), 2e-3)  # floor: one rounding
        assert _rel(g, grads32[name]) < 10 * spread, name


@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_weight_gradients_summed_in_float32_over_long_sequences(engine):
    """Summing W_hh's per-step gradients in bf16 adds a rounding per step (1.7e-2 measured at
    T=256, 1.0e-2 at T=128); summed in float32 the error stays that of the products (1.4e-3)."""
    torch.manual_seed(0)
    module = gatedrnn.LSTM(8, 8, engine=engine)
    gen = torch.Generator().manual_seed(0)
    x, target = torch.randn(128, 2, 8, generator=gen), torch.randn(128, 2, 8, generator=gen)
    _, _, grads32 = _step(module, x, None, target)
    _, _, grads16 = _step(module, x, None, target, dtype=BF16)
    assert _rel(grads16["weight_hh_l0"], grads32["weight_hh_l0"]) < 5e-3


class _ProductDtypes(TorchDispatchMode):
    """Records the operand dtypes of every matrix product dispatched inside it."""

    PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot"}

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.PRODUCTS:
            self.dtypes.update(a.dtype for a in args if isinstance(a, torch.Tensor))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("engine", ["fused", "autograd"])
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "mogrifier"])
def test_products_run_in_bf16_forward_and_backward(cell_name, engine):
    torch.manual_seed(0)
    module = MODULES[cell_name](I, H, engine=engine, **({"proj_size": 8} if cell_name == "lstm" else {}))
    x, hx, target = _data(module)
    with _ProductDtypes() as seen:
        _step(module, x, hx, target, dtype=BF16)
    assert seen.dtypes == {BF16}


@pytest.mark.parametrize("native", [False, True])
def test_auto_engine_takes_torch_kernels_under_cpu_autocast_only_with_native_bf16(native, monkeypatch):
    """torch.nn.LSTM under CPU bf16 autocast fails with a oneDNN primitive error on AVX2-only
    processors: under autocast, engine="auto" runs torch's kernels only where the processor has bf16
    arithmetic of its own (native.native_bf16), and the fused engine elsewhere; float16 autocast
    never goes there. Either way the output keeps the input's dtype."""
    monkeypatch.setattr(native_module, "native_bf16", lambda: native)
    module = gatedrnn.LSTM(I, H)
    x = torch.randn(T, B, I)
    assert module.resolve_engine(x) == "torch"
    with torch.autocast("cpu", dtype=BF16):
        assert module.resolve_engine(x) == ("torch" if native else "fused")
        if native and not REAL_NATIVE:
            return  # what the kernel computes is tested where it runs
        out, (h, c) = module(x)
        packed = module(pack_padded_sequence(x, [T, T - 1, 2, 1]))[0]
    assert out.dtype == h.dtype == c.dtype == packed.data.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.float16):
        assert module.resolve_engine(x) == "fused"


@pytest.mark.parametrize("cell_name", ["lstm", "rnn"])
def test_single_steps_keep_state_dtypes_under_autocast(cell_name):
    """A projected h (or a bias-free RNN's h) comes out of a bf16 product: it stays float32, so
    the state fed back at the next step matches the input as the modules require."""
    options = {"proj_size": 8} if cell_name == "lstm" else {"bias": False}
    step = CELL_MODULES[cell_name](I, H, **options)
    stack = MODULES[cell_name](I, H, num_layers=2, **options)
    x = torch.randn(B, I)
    with torch.autocast("cpu", dtype=BF16):
        state = step(x, step(x))
        _, stack_state = stack.step(x, stack.step(x)[1])
    for s in (state if isinstance(state, tuple) else (state,)) + (stack_state if isinstance(stack_state, tuple) else (stack_state,)):
        assert s.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast needs CUDA")
@pytest.mark.parametrize("engine", ["fused", "autograd"])
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "mogrifier"])
def test_fp16_cuda_training_step_matches_float32(cell_name, engine):
    torch.manual_seed(0)
    module = MODULES[cell_name](I, H, num_layers=2, engine=engine).cuda()
    x, hx, target = _data(module, device="cuda")
    _, loss32, grads32 = _step(module, x, hx, target, "cuda")
    _, loss16, grads16 = _step(module, x, hx, target, "cuda", torch.float16)
    # fp16 keeps 11 significant bits, 8x finer than bf16: the bf16 bounds hold with room
    assert abs(loss16 - loss32) <= 2e-3 * loss32
    for name, g in grads16.items():
        assert g.dtype == torch.float32, name
        assert _rel(g, grads32[name]) < 2e-2, name
