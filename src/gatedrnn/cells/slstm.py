"""sLSTM (Beck et al. 2024, xLSTM): exponential input gate, a normaliser ``n`` and a stabiliser ``m``.

Blocks of ``a`` in the order ``i, f, z, o`` (the LSTM's ``i, f, g, o`` positions); the recurrent
product is block-diagonal over ``num_heads`` heads of ``DH = H / num_heads`` units:

    a   = proj_ih(x_t) + blockdiag(W_hh) h_{t-1} + b_hh      # (B, 4H)
    m_t = a_i                               where n_{t-1} == 0 (a fresh state)
        = max(a_i, log sigma(a_f) + m_{t-1}) elsewhere
    i'  = exp(a_i - m_t)
    f'  = exp(log sigma(a_f) + m_{t-1} - m_t)
    c_t = f' * c_{t-1} + i' * tanh(a_z)
    n_t = f' * n_{t-1} + i'
    h_t = sigma(a_o) * c_t / n_t

``(c, n, m)`` hold the unstabilised ``C = c e^m`` and ``N = n e^m`` at a scale ``m`` chosen to
keep the exponentials in range; ``h = C / N`` does not see the scale, so ``m`` carries no gradient
(``ops.stop_gradient``): docs/derivations/slstm.md shows why that gradient is exact.
"""
from __future__ import annotations

from .base import Cell, ParamSpec, accumulate, init_bound, sum_rows

GATES = ("i", "f", "z", "o")


def heads_product(h, w, num_heads):
    """``blockdiag(w) h``: ``h`` ``(B, H)``, ``w`` ``(4H, DH)`` -> ``(B, 4H)``.

    Row ``g*H + n*DH + e`` of ``w`` is output unit ``e`` of gate ``g`` in head ``n``; head ``n``
    reads ``h[:, n*DH : (n+1)*DH]``. One batched product over the heads.
    """
    B, H = h.shape
    K = num_heads
    DH = H // K
    hk = h.reshape(B, K, DH).swapaxes(0, 1)  # (K, B, DH)
    wk = w.reshape(4, K, DH, DH).swapaxes(0, 1).reshape(K, 4 * DH, DH)  # (K, 4DH, DH), rows (g, e)
    out = hk @ wk.swapaxes(1, 2)  # (K, B, 4DH)
    return out.reshape(K, B, 4, DH).swapaxes(0, 1).swapaxes(1, 2).reshape(B, 4 * H)


def heads_product_backward(da, h, w, num_heads):
    """Gradients of ``heads_product`` with respect to ``h`` ``(B, H)`` and ``w`` ``(4H, DH)``."""
    B, H = h.shape
    K = num_heads
    DH = H // K
    dak = da.reshape(B, 4, K, DH).swapaxes(1, 2).swapaxes(0, 1).reshape(K, B, 4 * DH)  # (K, B, 4DH)
    hk = h.reshape(B, K, DH).swapaxes(0, 1)  # (K, B, DH)
    wk = w.reshape(4, K, DH, DH).swapaxes(0, 1).reshape(K, 4 * DH, DH)
    dw = (dak.swapaxes(1, 2) @ hk).reshape(K, 4, DH, DH).swapaxes(0, 1).reshape(4 * H, DH)
    dh = (dak @ wk).swapaxes(0, 1).reshape(B, H)
    return dh, dw


class SLSTMMath(Cell):
    """sLSTM with ``num_heads`` block-diagonal recurrent heads; state ``(h, c, n, m)``."""

    name = "slstm"
    has_cell_state = True
    state_names = ("h", "c", "n", "m")
    num_gates = 4
    layer_norm = False
    #: keeping c, n or m alone would mix elements taken at different stabiliser scales
    supports_zoneout = False
    positive_state = ("n",)
    options = {"bias": True, "num_heads": 1}
    option_samples = {"bias": (False,), "num_heads": (2,)}

    def validate(self):
        super().validate()
        k = self.num_heads
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"num_heads must be a positive integer, got {k!r}")

    def state_sizes(self, hidden_size):
        return (hidden_size,) * 4

    def check_hidden_size(self, hidden_size):
        if hidden_size % self.num_heads:
            raise ValueError(f"num_heads must divide hidden_size, got num_heads={self.num_heads} "
                             f"and hidden_size={hidden_size}")

    def param_spec(self, input_size, hidden_size):
        self.check_hidden_size(hidden_size)
        H, DH = hidden_size, hidden_size // self.num_heads
        bound = init_bound(H)
        spec = [ParamSpec("weight_ih", (4 * H, input_size), bound=bound),
                ParamSpec("weight_hh", (4 * H, DH), bound=init_bound(DH))]
        if self.bias:
            spec += [ParamSpec("bias_ih", (4 * H,), bound=bound), ParamSpec("bias_hh", (4 * H,), bound=bound)]
        return spec

    def sample_state(self, rng, batch, hidden_size):
        h, c, m = (rng.standard_normal((batch, hidden_size)) for _ in range(3))
        n = rng.uniform(0.5, 2.0, (batch, hidden_size))  # a sum of exponentials: positive
        return [h, c, n, m]

    def invariant_dstate(self, state, d_state):
        # (c, n, m) -> (c e^-s, n e^-s, m + s) changes no output; a loss on later outputs has a
        # zero derivative along it: dm = c dc + n dn (docs/derivations/slstm.md)
        _, c, n, _ = state
        dh, dc, dn, _ = d_state
        return [dh, dc, dn, c * dc + n * dn]

    def observed_state(self, ops, state):
        h, c, n, m = state
        scale = ops.exp(m)
        return (h, c * scale, n * scale)  # C and N: the unstabilised cell state and normaliser

    # -- forward ----------------------------------------------------------------------------
    def recurrent(self, p, h):
        """``blockdiag(W_hh) h (+ b_hh)``, ``h`` masked first when state dropout is on."""
        mask = p.get("mask_hh")
        if mask is not None:
            h = h * mask
        a = heads_product(h, p["weight_hh"], self.num_heads)  # (B, 4H)
        return (a + p["bias_hh"] if self.bias else a), h

    def step(self, ops, p, gx, state):
        h_prev, c_prev, n_prev, m_prev = state  # each (B, H)
        H = h_prev.shape[-1]
        gh, h_read = self.recurrent(p, h_prev)
        a = gx + gh  # (B, 4H)
        a_i, a_f, a_z, a_o = (a[..., k * H : (k + 1) * H] for k in range(4))
        log_f = ops.log_sigmoid(a_f)
        m = ops.stop_gradient(ops.where(n_prev == 0, a_i, ops.maximum(a_i, log_f + m_prev)))
        i = ops.exp(a_i - m)
        f = ops.exp(log_f + m_prev - m)
        z = ops.tanh(a_z)
        o = ops.sigmoid(a_o)
        c = f * c_prev + i * z
        n = f * n_prev + i
        h = o * c / n
        cache = {"h_read": h_read, "c_prev": c_prev, "n_prev": n_prev, "sig_f": ops.sigmoid(a_f),
                 "i": i, "f": f, "z": z, "o": o, "c": c, "n": n, "h": h}
        return (h, c, n, m), cache

    # -- backward: the forward read bottom-up, m held constant -------------------------------
    def step_backward(self, ops, p, cache, dstate, grads):
        dh, dc, dn, _ = dstate  # dm: m_t is a constant of the step, its gradient is not used
        i, f, z, o, c, n, h = (cache[k] for k in ("i", "f", "z", "o", "c", "n", "h"))
        c_prev, n_prev = cache["c_prev"], cache["n_prev"]
        do = dh * c / n
        dc = dc + dh * o / n
        dn = dn - dh * h / n
        di = dc * z + dn
        df = dc * c_prev + dn * n_prev
        dz = dc * i
        dc_prev = dc * f
        dn_prev = dn * f
        dm_prev = df * f  # f' = exp(log sigma(a_f) + m_{t-1} - m_t)
        da_i = di * i  # i' = exp(a_i - m_t)
        da_f = df * f * (1.0 - cache["sig_f"])  # d log sigma(a) / da = 1 - sigma(a)
        da_z = dz * (1.0 - z * z)
        da_o = do * o * (1.0 - o)
        da = ops.cat([da_i, da_f, da_z, da_o])  # (B, 4H)
        if self.bias:
            accumulate(grads, "bias_hh", sum_rows(da))
        dh_prev, dw = heads_product_backward(da, cache["h_read"], p["weight_hh"], self.num_heads)
        accumulate(grads, "weight_hh", dw)
        mask = p.get("mask_hh")
        if mask is not None:
            dh_prev = dh_prev * mask
        return da, (dh_prev, dc_prev, dn_prev, dm_prev)
