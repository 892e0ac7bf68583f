import numpy as np
import pytest

from gatedrnn.cells import CELLS, make_cell
from gatedrnn.reference import backward, forward, gradcheck, init_params

CASES = [
    ("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("lstm", {"forget_bias": 1.0}),
    ("peephole", {}), ("cifg", {}), ("gru", {}),
    *[("mogrifier", {"rounds": r}) for r in range(1, 6)], ("mogrifier", {"rank": 2}),
    ("lstm", {"proj_size": 2}), ("peephole", {"proj_size": 2}), ("cifg", {"proj_size": 2}),
    ("mogrifier", {"proj_size": 2, "rank": 2}),
    *[(c, {"layer_norm": True}) for c in CELLS],
    ("lstm", {"drop_gates": ("i",)}), ("lstm", {"drop_gates": ("f", "o")}), ("peephole", {"drop_gates": ("o",)}),
    ("lstm", {"input_activation": "identity"}), ("lstm", {"output_activation": "identity"}),
    *[(c, {"bias": False}) for c in CELLS],
]


def _id(case):
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
@pytest.mark.parametrize("seq_len", [1, 7])
@pytest.mark.parametrize("batch", [1, 3])
def test_backward_matches_finite_differences(case, seq_len, batch):
    cell, options = case
    errors = gradcheck(cell, seq_len=seq_len, batch=batch, **options)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: relative error {errors[worst]:.2e}"
