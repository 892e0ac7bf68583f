"""``run_layer``, the one entry of both engines for one layer and direction: engine names (and the
deprecated one), masks it refuses, empty batches."""
import re

import pytest
import torch

import gatedrnn
from gatedrnn.cells import CELLS
from gatedrnn.torch_engine import capability, functional
from gatedrnn.torch_engine.autograd_loop import autograd_layer
from gatedrnn.torch_engine.function import run_loop
from gatedrnn.torch_engine.functional import run_layer
from gatedrnn.torch_engine.generic import GENERIC

from .loop_cases import make_inputs


def test_reference_is_the_autograd_loop_with_a_deprecation_warning():
    """``engine="reference"`` (before 0.2) still runs the autograd loop, for one release, and
    says so; the same for the module argument and for ``reference_layer``."""
    cell, params, x, state = make_inputs("lstm", {})
    y, s = run_layer(cell, params, x, state, engine="autograd")
    with pytest.warns(DeprecationWarning, match='engine="reference" is deprecated.*engine="autograd"'):
        y_old, s_old = run_layer(cell, params, x, state, engine="reference")
    torch.testing.assert_close(y_old, y, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="reference_layer is deprecated"):
        y_old, _ = functional.reference_layer(cell, params, x, state)
    torch.testing.assert_close(y_old, y, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match='engine="reference" is deprecated'):
        module = gatedrnn.LSTM(4, 6, engine="reference")
    assert module.engine == "autograd"


def test_unknown_engine_is_refused_in_one_line():
    cell, params, x, state = make_inputs("gru", {})
    with pytest.raises(ValueError, match=re.escape(f"engine must be one of {functional.ENGINES}, got 'numpy'")):
        run_layer(cell, params, x, state, engine="numpy")
    assert {"fused", "autograd"} <= set(functional.ENGINES)


def test_autograd_layer_is_the_twin():
    cell, params, x, state = make_inputs("peephole", {})
    y, s = autograd_layer(cell, params, x, state)
    y_f, s_f = run_layer(cell, params, x, state, engine="fused")
    torch.testing.assert_close(y, y_f, rtol=1e-12, atol=1e-12)


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
    y, _ = run_layer(cell, {**params, "mask_hh": mask}, x, state, engine="autograd")
    assert torch.autograd.grad(y.sum(), mask)[0].abs().sum() > 0  # the twin differentiates it




def _empty_batch_runs(cell):
    """Every engine, and every specialised loop that takes ``cell``, as ``fn(p, x, state)``."""
    runs = {"fused": lambda p, x, s: run_layer(cell, p, x, s, engine="fused"),
            "autograd": lambda p, x, s: run_layer(cell, p, x, s, engine="autograd"),
            "generic": lambda p, x, s: run_loop(GENERIC, cell, p, x, s)}
    for loop in capability.LOOPS:
        if capability.accepts(loop.handles, cell):
            runs[loop.name] = lambda p, x, s, loop=loop: run_loop(loop, cell, p, x, s)
    return runs


@pytest.mark.parametrize("name", list(CELLS))
def test_empty_batch_gives_empty_outputs(name):
    """``(T, 0, I)``, as ``torch.nn`` takes it: outputs ``(T, 0, R)``, final states ``(0, size)``,
    and a backward whose parameter gradients are zeros, in every engine and specialised loop."""
    cell, params, x, state = make_inputs(name, {}, T=4, B=0)
    for engine, fn in _empty_batch_runs(cell).items():
        leaves = [t.clone().requires_grad_() for t in (*params.values(), x, *state)]
        p = dict(zip(params, leaves[: len(params)]))
        y, state_n = fn(p, leaves[len(params)], tuple(leaves[len(params) + 1 :]))
        assert y.shape == (4, 0, state[0].shape[-1]), engine
        assert [s.shape for s in state_n] == [s.shape for s in state], engine
        loss = y.sum() + sum(s.sum() for s in state_n)
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        for leaf, g in zip(leaves, grads):
            assert g is None or (g.shape == leaf.shape and not g.any()), engine


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_modules_take_an_empty_batch(name, batch_first):
    """The modules on every engine, as ``torch.nn`` does: empty outputs of the right shape. float32
    at H=512 too, where the specialised loops' products would run on oneDNN."""
    for engine, size in (("fused", 6), ("auto", 6), ("autograd", 6), ("fused", 512)):
        module = gatedrnn.layer(name, 4, size, engine=engine, batch_first=batch_first)
        x = torch.randn((0, 3, 4) if batch_first else (3, 0, 4), requires_grad=True)
        y, state_n = module(x)
        assert y.shape == ((0, 3, size) if batch_first else (3, 0, size)), engine
        for s in state_n if isinstance(state_n, tuple) else (state_n,):
            assert s.shape == (1, 0, size), engine
        y.sum().backward()
        assert all(p.grad is None or not p.grad.any() for p in module.parameters()), engine
    if name == "lstm":  # the shapes torch.nn gives
        y_ref, (h_ref, c_ref) = torch.nn.LSTM(4, 6, batch_first=batch_first)(x)
        assert y_ref.shape[:2] == y.shape[:2] and h_ref.shape[:2] == (1, 0)


# -- torch.func through the fused engine -------------------------------------------------------
def _module_fn(name, engine="fused"):
    torch.manual_seed(0)
    module = gatedrnn.layer(name, 3, 4, engine=engine, dtype=torch.float64)
    params = {k: v.detach() for k, v in module.named_parameters()}

    def fn(p, x):
        y, state = torch.func.functional_call(module, p, (x,))
        return y
    return fn, params


@pytest.mark.parametrize("engine", ["fused", "auto"])
@pytest.mark.parametrize("name", list(CELLS))
def test_torch_func_transforms_through_the_fused_engine(name, engine):
    """``vmap`` over inputs and over gradients, ``jacrev``, ``jacfwd``, ``functional_call``: the fused
    engine (and ``auto``, whose torch.nn kernels have no batching rules) gives what its plain calls
    give (float64)."""
    fn, params = _module_fn(name, engine)
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(3, 2, 2, 3, generator=gen, dtype=torch.float64)  # 3 inputs (T=2, B=2, I=3)
    ys = torch.func.vmap(fn, in_dims=(None, 0))(params, xs)
    for x, y in zip(xs, ys):
        torch.testing.assert_close(y, fn(params, x), rtol=1e-12, atol=1e-12)
    x = xs[0]
    jac_rev = torch.func.jacrev(fn, argnums=1)(params, x)
    jac_fwd = torch.func.jacfwd(fn, argnums=1)(params, x)
    jac = torch.autograd.functional.jacobian(lambda x_: fn(params, x_), x)  # plain autograd, LoopFunction
    torch.testing.assert_close(jac_rev, jac, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jac_fwd, jac, rtol=1e-10, atol=1e-12)
    y, vjp = torch.func.vjp(lambda p: fn(p, x), params)
    cotangents = torch.randn(4, *y.shape, generator=gen, dtype=torch.float64)
    batched = torch.func.vmap(vjp)(cotangents)[0]  # vmap over gradients
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    y = fn(leaves, x)
    for i, ct in enumerate(cotangents):
        grads = torch.autograd.grad(y, list(leaves.values()), ct, retain_graph=True)
        for key, g in zip(leaves, grads):
            torch.testing.assert_close(batched[key][i], g, rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck_with_batched_grad(name):
    """``gradcheck(..., check_batched_grad=True)``: the backward of the fused Function vmapped over
    gradients (through the autograd twin), on the input, a weight and the initial state."""
    cell, params, x, state = make_inputs(name, {}, T=3, B=2, I=3, H=4)
    x = x.requires_grad_()
    key = "weight_hh" if "weight_hh" in params else "weight_ih"  # minGRU/minLSTM: no recurrent weight
    w = params[key].requires_grad_()
    h0 = state[0].requires_grad_()

    def fn(x_, w_, h_):
        y, _ = run_layer(cell, {**params, key: w_}, x_, (h_, *state[1:]), engine="fused")
        return y
    assert torch.autograd.gradcheck(fn, (x, w, h0), check_batched_grad=True)


SINGLE_OPTIONS = [(name, {key: value}) for name, cls in CELLS.items()
                  for key, values in cls.option_samples.items() for value in values]


@pytest.mark.parametrize("case", SINGLE_OPTIONS, ids=[f"{n}-{k}={v}" for n, o in SINGLE_OPTIONS for k, v in o.items()])
def test_vmap_and_jacfwd_for_every_option(case):
    """Every option of every cell (each sample value the cell declares): ``vmap`` over inputs and
    ``jacfwd`` through ``run_layer(engine="fused")`` equal the plain calls and autograd's jacobian."""
    name, options = case
    try:
        cell, params, x, state = make_inputs(name, options, T=2, B=2, I=3, H=4)
    except ValueError:  # a value the cell refuses alone (a sample meant for a combination)
        pytest.skip(f"{name} refuses {options} alone")
    xs = torch.stack([x, x.flip(0)])

    def fn(x_):
        return run_layer(cell, params, x_, state, engine="fused")[0]
    for x_, y in zip(xs, torch.func.vmap(fn)(xs)):
        torch.testing.assert_close(y, fn(x_), rtol=1e-12, atol=1e-12)
    jac = torch.autograd.functional.jacobian(fn, x)
    torch.testing.assert_close(torch.func.jacfwd(fn)(x), jac, rtol=1e-10, atol=1e-12)
