"""One step of an LSTM-family layer for generation, in a handful of out-of-place operations.

``torch.nn.LSTM`` called one token at a time costs milliseconds per call on CPU, and the cell's
own ``step`` pays for its cache and block dicts, which at batch 1 cost more than the arithmetic.
``lstm_step`` computes what ``torch._VF.lstm_cell`` does not (peepholes, CIFG, ``forget_bias``,
the Mogrifier's rounds) for the configurations ``capability.PER_TOKEN_STEP`` declares.
"""
from __future__ import annotations

import torch

from .capability import PER_TOKEN_STEP, accepts
from .loops.common import combined_bias


def lstm_step(cell, p):
    """One step ``(x (B, I), (h, c)) -> (h, c)`` of an LSTM-family layer, autograd-transparent; or
    ``None`` where the capability table leaves the configuration to the cell's own step. ``p``
    holds the parameters themselves, and every view of them is taken per call, so updates in
    place and a replaced ``.data`` are both seen."""
    if not accepts(PER_TOKEN_STEP, cell):
        return None
    G = cell.num_gates
    H = p["weight_hh"].shape[0] // G
    rounds = getattr(cell, "rounds", 0)

    def mog(v, name, k):  # v @ Q_k^T (R_k^T); with ``rank``, through the two thin factors
        if cell.rank is None:
            return v @ p[f"weight_{name}"][k].t()
        return (v @ p[f"weight_{name}_right"][k].t()) @ p[f"weight_{name}_left"][k].t()

    def step(x, state):
        h, c = state
        if rounds:
            zero = x.new_zeros(())
            for j in range(1, rounds + 1):  # 2 sigma(.) * v in one addcmul
                if j % 2:
                    x = torch.addcmul(zero, torch.sigmoid(mog(h, "q", (j - 1) // 2)), x, value=2.0)
                else:
                    h = torch.addcmul(zero, torch.sigmoid(mog(x, "r", j // 2 - 1)), h, value=2.0)
        bias = combined_bias(cell, p, G, H, x)
        w_ih, w_hh = p["weight_ih"].t(), p["weight_hh"].t()
        peep = p["weight_peephole"].split(H) if cell.peephole else None  # w_i, w_f, w_o
        a = x @ w_ih if bias is None else torch.addmm(bias, x, w_ih)
        a = a.addmm(h, w_hh)
        if cell.coupled:  # f, g, o; c = f c_prev + (1 - f) g = g + f (c_prev - g)
            f, g, o = a.chunk(3, 1)
            f, g = torch.sigmoid(f), torch.tanh(g)
            c = torch.addcmul(g, f, c - g)
        else:
            i, f, g, o = a.chunk(4, 1)
            if peep is not None:
                i, f = torch.addcmul(i, c, peep[0]), torch.addcmul(f, c, peep[1])
            i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
            c = torch.addcmul(f * c, i, g)
        if peep is not None:
            o = torch.addcmul(o, c, peep[-1])
        return torch.sigmoid(o) * torch.tanh(c), c

    return step
