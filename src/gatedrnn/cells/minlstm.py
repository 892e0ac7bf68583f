"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): normalised gates that read only the input.

    a    = proj_ih(x_t)                              # (B, 3H), blocks f, i, h; no recurrent weight
    f    = sigma(a_f),  i = sigma(a_i),  h~ = g(a_h)  # g as in mingru.py
    h_t  = f / (f + i) * h_{t-1} + i / (f + i) * h~

``f / (f + i) = sigma(d)`` with ``d = log sigma(a_f) - log sigma(a_i)``: computed that way it stays
finite where both gates underflow, and ``i / (f + i) = 1 - sigma(d)``.
"""
from __future__ import annotations

from .mingru import InputGatedCell, g, g_grad


class MinLSTMMath(InputGatedCell):
    name = "minlstm"
    num_gates = 3

    def step(self, ops, p, gx, state):
        self.check_no_state_dropout(p)
        (h_prev,) = state  # (B, H)
        H = h_prev.shape[-1]
        a_f, a_i = gx[..., :H], gx[..., H : 2 * H]
        fn = ops.sigmoid(ops.log_sigmoid(a_f) - ops.log_sigmoid(a_i))  # f / (f + i)
        ht = g(ops, gx[..., 2 * H :])
        h = fn * h_prev + (1.0 - fn) * ht
        cache = {"h_prev": h_prev, "fn": fn, "ht": ht, "sig_f": ops.sigmoid(a_f), "sig_i": ops.sigmoid(a_i)}
        return (h,), cache

    def step_backward(self, ops, p, cache, dstate, grads):
        (dh,) = dstate
        h_prev, fn, ht = cache["h_prev"], cache["fn"], cache["ht"]
        dfn = dh * (h_prev - ht)  # h = fn h_prev + (1 - fn) h~
        dht = dh * (1.0 - fn)
        dh_prev = dh * fn
        dd = dfn * fn * (1.0 - fn)  # fn = sigma(d)
        da_f = dd * (1.0 - cache["sig_f"])  # d = log sigma(a_f) - log sigma(a_i)
        da_i = -dd * (1.0 - cache["sig_i"])
        da_h = dht * g_grad(ops, ht)
        return ops.cat([da_f, da_i, da_h]), (dh_prev,)
