"""torch._VF's single-step kernels behind ``step`` (torch_engine/native.py): which cells they take,
and that they compute what the cell's own step computes, value and gradient, in float64."""
import pytest
import torch

from gatedrnn.cells import make_cell
from gatedrnn.torch_engine.native import step_kernel

from .stepping import assert_steps_match, module_pair

TAKEN = [("lstm", {}), ("lstm", {"bias": False}), ("lstm", {"forget_bias_init": 1.0}), ("gru", {}),
         ("gru", {"bias": False}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("rnn", {"bias": False})]
LEFT = [("lstm", {"forget_bias": 1.0}), ("lstm", {"proj_size": 3}), ("lstm", {"layer_norm": True}),
        ("peephole", {}), ("cifg", {}), ("mogrifier", {}), ("gru", {"layer_norm": True}),
        ("lstm", {"output_activation": "identity"})]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", TAKEN, ids=_id)
def test_step_kernel_equals_the_cells_step(case):
    fast, slow = module_pair(*case)
    assert step_kernel(fast.cell, fast._step_params()[0][0], torch.zeros(2, 5, dtype=torch.float64)) is not None
    assert_steps_match(fast, slow)


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


_WARNS = """
import sys, warnings, torch
import gatedrnn
first = getattr(torch.nn, sys.argv[1]) if sys.argv[1] == "LSTM" else gatedrnn.LSTM
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first(3, 4, proj_size=2)(torch.randn(5, 2, 3))
print(sum("oneDNN" in str(w.message) for w in caught))
"""


def test_no_onednn_projection_warning_leaks():
    """torch.nn.LSTM with projections warns (once per process) that oneDNN does not take them;
    gatedrnn chose that kernel itself and keeps the warning to itself. Each run is a fresh
    process, since the warning is given once: the control shows this torch does warn."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    counts = {}
    for first in ("LSTM", "gatedrnn"):
        run = subprocess.run([sys.executable, "-c", _WARNS, first], capture_output=True, text=True, env=env, check=True)
        counts[first] = int(run.stdout.split()[-1])
    assert counts == {"LSTM": 1, "gatedrnn": 0}
