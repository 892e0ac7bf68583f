"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): gates that read only the input.

    a        = proj_ih(x_t)                          # (B, 2H), blocks z, h; no recurrent weight
    z        = sigma(a_z)
    h~       = g(a_h),  g(v) = v + 0.5 (v >= 0), sigma(v) (v < 0)
    h_t      = (1 - z) * h_{t-1} + z * h~

``g`` keeps ``h~`` positive, which the log-space parallel scan needs (the paper's appendix B.3).
Nothing in a step reads ``h_{t-1}`` through a weight, so a whole sequence is one input product and
a first-order linear recurrence: docs/derivations/mingru.md.
"""
from __future__ import annotations

from .base import Cell, ParamSpec, init_bound


def g(ops, v):
    """``v + 0.5`` for ``v >= 0``, ``sigma(v)`` below: continuous, positive, slope 1 above zero."""
    return ops.where(v >= 0, v + 0.5, ops.sigmoid(v))


def g_grad(ops, y):
    """``g'`` from its output ``y = g(v)``: ``y >= 0.5`` exactly where ``v >= 0``."""
    return ops.where(y >= 0.5, 1.0, y * (1.0 - y))


class InputGatedCell(Cell):
    """What minGRU and minLSTM share: one input projection ``weight_ih`` (no ``weight_hh``)."""

    layer_norm = False
    has_recurrent_product = False
    options = {"bias": True}
    option_samples = {"bias": (False,)}

    def check_no_state_dropout(self, p):
        if p.get("mask_hh") is not None:
            raise ValueError(f"mask_hh drops the state that feeds the recurrent product; cell {self.name!r} has none")

    def hidden_size_of(self, params):
        return params["weight_ih"].shape[0] // self.num_gates

    def param_spec(self, input_size, hidden_size):
        G, H = self.num_gates, hidden_size
        bound = init_bound(H)
        spec = [ParamSpec("weight_ih", (G * H, input_size), bound=bound)]
        if self.bias:
            spec.append(ParamSpec("bias_ih", (G * H,), bound=bound))
        return spec


class MinGRUMath(InputGatedCell):
    name = "mingru"
    num_gates = 2

    def step(self, ops, p, gx, state):
        self.check_no_state_dropout(p)
        (h_prev,) = state  # (B, H)
        H = h_prev.shape[-1]
        z = ops.sigmoid(gx[..., :H])
        ht = g(ops, gx[..., H:])
        h = (1.0 - z) * h_prev + z * ht
        return (h,), {"h_prev": h_prev, "z": z, "ht": ht}

    def step_backward(self, ops, p, cache, dstate, grads):
        (dh,) = dstate
        h_prev, z, ht = cache["h_prev"], cache["z"], cache["ht"]
        dz = dh * (ht - h_prev)
        dht = dh * z
        dh_prev = dh * (1.0 - z)
        da_z = dz * z * (1.0 - z)
        da_h = dht * g_grad(ops, ht)
        return ops.cat([da_z, da_h]), (dh_prev,)
