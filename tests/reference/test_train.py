"""The reference engine trains on its own (issue 2, item 6): SGD on the walkthrough's toy."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gatedrnn.reference import backward, forward, init_params
from gatedrnn.reference.train import fit_sequence, squared_error

TARGETS = [-0.5, 0.2, 0.1, -0.5]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("cell, options", [
    ("lstm", {"output_activation": "identity"}),  # the walkthrough's cell, h = o * c
    ("lstm", {}),
    ("peephole", {}),
])
def test_sgd_fits_the_toy_sequence(cell, options):
    result = fit_sequence(TARGETS, cell=cell, iterations=100, lr=0.1, seed=0, **options)
    assert len(result.losses) == 100
    assert result.losses[-1] < 1e-3
    assert result.losses[-1] < result.losses[0] / 100
    np.testing.assert_allclose(result.predictions, TARGETS, atol=0.03)


def test_same_seed_same_run():
    a = fit_sequence(TARGETS, iterations=5, seed=3, hidden_size=8, input_size=4)
    b = fit_sequence(TARGETS, iterations=5, seed=3, hidden_size=8, input_size=4)
    assert a.losses == b.losses


def test_callback_sees_every_iteration():
    seen = []
    fit_sequence(TARGETS, iterations=4, hidden_size=8, input_size=4, callback=lambda i, loss: seen.append(i))
    assert seen == [0, 1, 2, 3]


def test_squared_error_gradient_drives_backward():
    # the loss and its dy agree with a central difference through forward and backward
    p = init_params("lstm", 4, 5, rng=0)
    x = np.random.default_rng(1).random((3, 1, 4))
    targets = np.array([0.3, -0.2, 0.1])
    y, _, cache = forward("lstm", p, x)
    _, dy = squared_error(y, targets)
    analytic = backward(cache, dy)["bias_hh"][7]
    eps = 1e-6
    losses = []
    for sign in (1, -1):
        q = {k: v.copy() for k, v in p.items()}
        q["bias_hh"][7] += sign * eps
        losses.append(squared_error(forward("lstm", q, x)[0], targets)[0])
    assert abs(analytic - (losses[0] - losses[1]) / (2 * eps)) < 1e-7


def test_bad_arguments():
    with pytest.raises(ValueError, match="targets must be a non-empty 1-D sequence"):
        fit_sequence([])
    with pytest.raises(ValueError, match="lr > 0"):
        fit_sequence(TARGETS, lr=0.0)


def test_reference_and_cells_run_without_torch():
    # a None entry in sys.modules makes any import of torch fail
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import gatedrnn.cells, gatedrnn.reference, gatedrnn.reference.train\n"
        "r = gatedrnn.reference.train.fit_sequence([0.1, -0.1], iterations=2, hidden_size=4, input_size=3)\n"
        "assert len(r.losses) == 2\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_no_torch_import_in_reference_or_cells():
    for folder in ("reference", "cells"):
        for path in (ROOT / "src" / "gatedrnn" / folder).glob("*.py"):
            text = path.read_text()
            assert "import torch" not in text and "from torch" not in text, path


def test_example_prints_the_loss_going_down():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "toy_sequence.py"), "--iterations", "60"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    losses = [float(line.split()[-1]) for line in proc.stdout.splitlines() if line.startswith("iteration")]
    assert len(losses) == 7  # iterations 0, 10, ..., 50 and the last, 59
    assert losses[-1] < losses[0] / 10
