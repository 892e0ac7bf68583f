"""Gradient flow: one norm per step, finite, written as CSV and PNG; the RNN's decays with the lag."""
import csv

import numpy as np

from gatedrnn.experiments.gradflow import Flow, describe_zeros, gradient_flow, write_flow, zero_from


def test_gradflow_smoke(tmp_path):
    flows = [gradient_flow(c, seq_len=12, hidden_size=8, batches=2, batch_size=4, train_steps=3)
             for c in ("rnn", "lstm")]
    rnn, lstm = flows
    for fl in flows:
        assert fl.init.shape == fl.trained.shape == (12,)
        assert np.isfinite(fl.init).all() and (fl.init > 0).all()
    assert rnn.init_c is None and lstm.init_c.shape == (12,)
    assert rnn.init[0] < rnn.init[-1]  # eleven steps back is weaker than the last step
    paths = write_flow(flows, tmp_path)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == 2 * 2 * 12 and set(rows[0]) == {"cell", "stage", "t", "lag", "grad_h", "grad_c", "note"}
    assert not any(r["note"] for r in rows) and paths["zeros"] == []  # finite and non-zero: nothing to say
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_gradflow_norms_match_a_whole_sequence_backward():
    # the step-by-step probe against one sequence call: d loss / d h0 must agree
    import torch

    from gatedrnn.data.tasks import make_task
    from gatedrnn.experiments.compare import build_model
    from gatedrnn.experiments.gradflow import hidden_gradient_norms

    torch.manual_seed(0)
    task = make_task("adding", seq_len=5)
    model = build_model("gru", task, 6, {}).double()
    b = task.sample(3, np.random.default_rng(0))
    x, y = b.x.double(), b.y.double()
    norms, _ = hidden_gradient_norms(model, x, y)
    h0 = torch.zeros(1, 3, 6, dtype=torch.float64)
    # the state after step 0 is the initial state of the sequence x[1:]
    _, h1 = model.rnn(x[:1], h0)
    h1 = h1.detach().requires_grad_()
    out, _ = model.rnn(x[1:], h1)
    loss = (model.head(out[-1]) - y).pow(2).sum()
    (g,) = torch.autograd.grad(loss, h1)
    np.testing.assert_allclose(norms[0], g[0].norm(dim=-1).mean().item(), rtol=1e-10)


def test_a_gradient_that_underflows_to_zero_is_named_in_csv_console_and_figure(tmp_path):
    """A norm of exactly 0 falls off the log axis: where it starts is said, not left to be guessed."""
    T = 8
    decaying = np.array([0.0, 0.0, 0.0, 1e-30, 1e-20, 1e-10, 1e-5, 1.0])  # (T,) by t: zero from lag 5
    c = np.array([0.0, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 0.0])  # c_T is 0 by construction, lag 7 is not
    fl = Flow("rnn", T, 4, 10, init=np.ones(T), trained=decaying, init_c=np.ones(T) * 0.5, trained_c=c)
    assert zero_from(decaying) == 5 and zero_from(np.ones(T)) is None
    assert zero_from(c, skip_last=True) == 7 and zero_from(c) == 0
    paths = write_flow([fl], tmp_path)
    assert paths["zeros"] == [("rnn", "trained", "h", 5), ("rnn", "trained", "c", 7)]
    assert describe_zeros([fl])[0] == "rnn trained: ||dL/dh_t|| is exactly 0 from lag 5 on (underflow: off the log axis)"
    rows = [r for r in csv.DictReader(open(paths["csv"])) if r["stage"] == "trained"]
    notes = {int(r["lag"]): r["note"] for r in rows}
    assert [lag for lag, n in notes.items() if "grad_h exactly 0" in n] == [7, 6, 5]
    assert [lag for lag, n in notes.items() if "grad_c exactly 0" in n] == [7]  # not lag 0
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
