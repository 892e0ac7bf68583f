"""The per-token steps behind the modules' ``step()``: ``generation.lstm_step`` for the LSTM family
against the cell's own step, and the configurations it leaves to the cell; ``generation.stack_step``,
a whole stack's token in one compiled call (``csrc/step.cpp``), against the module's eager step and
the NumPy reference, float64, for every cell and option sample ``capability.COMPILED_STEP`` declares,
many tokens in a row, and what sends a call back to the eager step (skipped where no C++ compiler
can build the kernels)."""
import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn import reference
from gatedrnn.cells import CELLS, make_cell
from gatedrnn.torch_engine import capability, compiled, generation

from .loop_cases import _id
from .stepping import assert_steps_match, module_pair, plausible
from .test_compiled import Spy

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
    assert generation.lstm_step(fast_module.cell, fast_module._step_params()[0][0]) is not None
    assert_steps_match(fast_module, slow)


@pytest.mark.parametrize("case", STEP_LEFT, ids=_id)
def test_lstm_step_leaves_other_configurations_to_the_cell(case):
    cell = make_cell(case[0], **case[1])
    params = {s.name: torch.zeros(s.shape) for s in cell.param_spec(5, 6)}
    assert generation.lstm_step(cell, params) is None


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


# -- the compiled step of a whole stack ---------------------------------------------------------
def _configs():
    """Each declared cell at its defaults and with each declared option at each of its samples
    (the Mogrifier also with ``rank`` at fewer rounds)."""
    out = []
    for name, declared in capability.COMPILED_STEP.items():
        out.append((name, {}))
        samples = CELLS[name].option_samples
        for key in declared:
            out += [(name, {key: v}) for v in samples.get(key, ())]
    out.append(("mogrifier", {"rounds": 4, "rank": 2, "bias": False, "forget_bias": 1.0}))
    return out


CONFIGS = _configs()


@pytest.fixture
def kernels(monkeypatch):
    module = compiled.pointwise()
    if module is None or not hasattr(module, "stack_step"):
        pytest.skip("the compiled kernels are off or cannot be built here")
    spy = Spy(module)
    monkeypatch.setattr(compiled, "pointwise", lambda: spy)
    return spy


def _module(name, options, seed=0, I=5, H=6, layers=2, engine="fused"):
    torch.manual_seed(seed)
    return gatedrnn.layer(name, I, H, num_layers=layers, engine=engine, dtype=torch.float64, **options)


def _run(module, xs, hx):
    """``module.step`` over the tokens ``xs`` (T, B, I) or (T, I) from ``hx``; the outputs and
    every state on the way, under ``torch.no_grad``."""
    outs, states, state = [], [], hx
    with torch.no_grad():
        for x in xs:
            y, state = module.step(x, state)
            outs.append(y)
            states.append(state if isinstance(state, tuple) else (state,))
    return torch.stack(outs), states


def _reference(module, name, options, xs, hx):
    """The NumPy reference over the same tokens as a sequence, layer by layer: outputs and final state."""
    inp, finals = xs.numpy(), []
    hx = hx if isinstance(hx, tuple) else (hx,)
    for k in range(module.num_layers):
        params = {n: p.detach().numpy() for n, p in module.layer_params(k).items()}
        state = tuple(s[k].numpy() for s in hx)
        inp, state_n, _ = reference.forward(name, params, inp, state if len(state) > 1 else state[0], **options)
        finals.append(state_n if isinstance(state_n, tuple) else (state_n,))
    return inp, [np.stack(parts) for parts in zip(*finals)]


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
@pytest.mark.parametrize("batch", [1, 3])
def test_compiled_step_equals_eager_and_reference(config, batch, kernels, monkeypatch):
    """Twelve tokens in a row from a random state, float64: every output and every state on
    the way equal to the eager step's (the same module with the kernels off), and the outputs
    and final state to the NumPy reference's."""
    name, options = config
    module = _module(name, options)
    gen = torch.Generator().manual_seed(1)
    T = 12
    xs = torch.randn(T, batch, 5, generator=gen, dtype=torch.float64)
    hx = plausible(name, tuple(torch.randn(2, batch, 6, generator=gen, dtype=torch.float64) * 0.5
                               for _ in module.state_sizes))
    hx = hx if len(hx) > 1 else hx[0]
    y, states = _run(module, xs, hx)
    assert kernels.calls == T, "the compiled step did not run"
    monkeypatch.setattr(compiled, "ENABLED", False)
    y_eager, states_eager = _run(module, xs, hx)
    assert kernels.calls == T, "the eager step called the compiled one"
    torch.testing.assert_close(y, y_eager, rtol=1e-12, atol=1e-12)
    for got, want in zip(states, states_eager):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    y_ref, final_ref = _reference(module, name, options, xs, hx)
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(states[-1], final_ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(capability.COMPILED_STEP))
def test_compiled_step_unbatched_float32_and_zero_state(name, kernels, monkeypatch):
    """An unbatched token from no state, in float32, as the eager step computes it."""
    torch.manual_seed(0)
    module = gatedrnn.layer(name, 5, 8, num_layers=3, engine="auto")
    xs = torch.randn(4, 5)
    y, states = _run(module, xs, None)
    assert kernels.calls == 4 and y.shape == (4, 8) and states[-1][0].shape == (3, 8)
    monkeypatch.setattr(compiled, "ENABLED", False)
    y_eager, states_eager = _run(module, xs, None)
    torch.testing.assert_close(y, y_eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(states[-1], states_eager[-1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("change", ["in_place", "load_state_dict", "data", "double"])
def test_a_parameter_change_after_a_step_is_seen(change, kernels):
    """After a first token, a change to the weights (in place, ``load_state_dict``, a replaced
    ``.data``, ``.double()``) changes the next token as it changes the eager step's."""
    fast, other = _module("peephole", {}, seed=0), _module("peephole", {}, seed=3)
    x = torch.randn(2, 5, dtype=torch.float64)
    with torch.no_grad():
        before = fast.step(x)[0]
        if change == "in_place":
            for p in fast.parameters():
                p.mul_(1.5)
        elif change == "load_state_dict":
            fast.load_state_dict(other.state_dict())
        elif change == "data":
            fast.weight_ih_l1.data = fast.weight_ih_l1.data * 2.0
        else:
            fast.float()
            fast.double()
            fast.weight_ih_l0.add_(0.25)
        calls = kernels.calls
        after = fast.step(x)[0]
    assert kernels.calls == calls + 1
    assert not torch.allclose(before, after)
    with torch.no_grad():
        compiled_after = after.clone()
        saved, compiled.ENABLED = compiled.ENABLED, False
        try:
            torch.testing.assert_close(compiled_after, fast.step(x)[0], rtol=1e-12, atol=1e-12)
        finally:
            compiled.ENABLED = saved


def test_gradients_and_masks_take_the_eager_step(kernels):
    """With gradients enabled the differentiable step runs (and gradients flow); so do training
    mode with dropout between layers, zoneout, the autograd engine, a batch of more than
    ``MAX_ROWS`` rows and a bidirectional module's refusal; a wrong input gets the eager step's error."""
    module = _module("lstm", {})
    x = torch.randn(2, 5, dtype=torch.float64)
    y, _ = module.step(x)
    y.sum().backward()
    assert module.weight_ih_l0.grad is not None and kernels.calls == 0
    for m in (_module("lstm", {"dropout": 0.5}), _module("lstm", {"zoneout": 0.2}), _module("gru", {}, engine="autograd")):
        with torch.no_grad():
            m.step(x)
    assert kernels.names <= {"hash_mask"}  # zoneout's masks from the hash; no step kernel
    kernels.calls = 0
    module.eval()
    with torch.no_grad():
        from gatedrnn.torch_engine.generation import MAX_ROWS

        module.step(torch.randn(MAX_ROWS + 1, 5, dtype=torch.float64))  # a batch a GEMM does better
        assert kernels.calls == 0
        module.step(x)
        assert kernels.calls == 1
        with pytest.raises(RuntimeError, match="inconsistent input_size"):
            module.step(torch.randn(2, 4, dtype=torch.float64))
        with pytest.raises(RuntimeError, match="dtype"):
            module.step(x.float())
