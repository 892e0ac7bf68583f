"""torch._VF's single-step kernels behind ``step`` (torch_engine/native.py): which cells they take,
and that they compute what the cell's own step computes, value and gradient, in float64."""
import pytest
import torch

import gatedrnn
from gatedrnn.cells import make_cell
from gatedrnn.torch_engine.native import step_kernel

TAKEN = [("lstm", {}), ("lstm", {"bias": False}), ("lstm", {"forget_bias_init": 1.0}), ("gru", {}),
         ("gru", {"bias": False}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"bias": False})]
LEFT = [("lstm", {"forget_bias": 1.0}), ("lstm", {"proj_size": 3}), ("lstm", {"layer_norm": True}),
        ("peephole", {}), ("cifg", {}), ("mogrifier", {}), ("gru", {"layer_norm": True}),
        ("lstm", {"output_activation": "identity"})]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def _module(name, options, engine):
    torch.manual_seed(0)
    cls = {"lstm": gatedrnn.LSTM, "gru": gatedrnn.GRU, "rnn": gatedrnn.RNN}[name]
    return cls(5, 6, num_layers=2, engine=engine, dtype=torch.float64, **options)


@pytest.mark.parametrize("case", TAKEN, ids=_id)
def test_step_kernel_equals_the_cells_step(case):
    fast, slow = _module(*case, "fused"), _module(*case, "reference")
    assert step_kernel(fast.cell, fast._step_params()[0][0], torch.zeros(2, 5, dtype=torch.float64)) is not None
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    outs = []
    for module in (fast, slow):
        state, ys = None, []
        for t in range(4):
            y, state = module.step(x[t], state)
            ys.append(y)
        loss = torch.stack(ys).pow(2).sum()
        outs.append((torch.stack(ys), torch.autograd.grad(loss, [x, *module.parameters()])))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", LEFT, ids=_id)
def test_other_cells_keep_their_own_step(case):
    cell = make_cell(case[0], **case[1])
    params = {s.name: torch.zeros(s.shape) for s in cell.param_spec(5, 6)}
    assert step_kernel(cell, params, torch.zeros(2, 5)) is None


def test_state_dropout_and_autocast_keep_the_cells_step():
    cell = make_cell("lstm")
    params = {s.name: torch.zeros(s.shape) for s in cell.param_spec(5, 6)}
    x = torch.zeros(2, 5)
    assert step_kernel(cell, params, x) is not None
    assert step_kernel(cell, {**params, "mask_hh": torch.ones(2, 6)}, x) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert step_kernel(cell, params, x) is None
    assert step_kernel(cell, params, x.half()) is None
