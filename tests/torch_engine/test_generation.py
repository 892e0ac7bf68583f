"""``generation.lstm_step``, the per-token step behind the modules' ``step()`` for the LSTM family,
against the cell's own step; and the configurations it leaves to the cell."""
import pytest
import torch

from gatedrnn.cells import make_cell
from gatedrnn.torch_engine import generation

from .loop_cases import _id
from .stepping import assert_steps_match, module_pair

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
