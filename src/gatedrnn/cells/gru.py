"""Gated recurrent unit (Cho et al. 2014), with PyTorch's placement of the reset gate.

    a_x = proj_ih(x_t), a_h = proj_hh(h_{t-1})         # (B, 3H), blocks r, z, n
    r   = sigma(a_x,r + a_h,r)
    z   = sigma(a_x,z + a_h,z)
    n   = tanh(a_x,n + r * a_h,n)                       # a_h,n includes b_hn, as torch.nn.GRU
    h_t = (1 - z) * n + z * h_{t-1}
"""
from __future__ import annotations

from .base import Cell


class GRUMath(Cell):
    name = "gru"
    num_gates = 3
    options = {"bias": True, "layer_norm": False}
    option_samples = {"bias": (False,), "layer_norm": (True,)}

    def param_spec(self, input_size, hidden_size):
        return self.linear_spec(input_size, hidden_size, hidden_size)

    def step(self, ops, p, gx, state):
        (h_prev,) = state  # (B, H)
        H = h_prev.shape[-1]
        gh, hh_cache = self.project(ops, p, h_prev, "hh")  # (B, 3H)
        r = ops.sigmoid(gx[..., :H] + gh[..., :H])
        z = ops.sigmoid(gx[..., H : 2 * H] + gh[..., H : 2 * H])
        gh_n = gh[..., 2 * H :]
        n = ops.tanh(gx[..., 2 * H :] + r * gh_n)
        h = (1.0 - z) * n + z * h_prev
        return (h,), {"h_prev": h_prev, "r": r, "z": z, "n": n, "gh_n": gh_n, "hh": hh_cache}

    def step_backward(self, ops, p, cache, dstate, grads):
        (dh,) = dstate
        h_prev, r, z, n, gh_n = (cache[k] for k in ("h_prev", "r", "z", "n", "gh_n"))
        dn = dh * (1.0 - z)
        dz = dh * (h_prev - n)
        dh_prev = dh * z
        da_n = dn * (1.0 - n * n)
        dr = da_n * gh_n
        da_r = dr * r * (1.0 - r)
        da_z = dz * z * (1.0 - z)
        dgx = ops.cat([da_r, da_z, da_n])  # (B, 3H)
        dgh = ops.cat([da_r, da_z, da_n * r])
        dh_prev = dh_prev + self.project_backward(ops, p, cache["hh"], dgh, "hh", grads)
        return dgx, (dh_prev,)
