"""IndRNN (Li et al. 2018): one recurrent weight per unit, the units independent of each other.

    h_t = act(proj_ih(x_t) + weight_hh * h_{t-1} + b_hh)     # act: relu (default) or tanh

``weight_hh`` is ``(H,)``: a diagonal recurrent matrix, so a step has no recurrent product and
the layer's units only mix through the next layer (or the next layer's input product).
"""
from __future__ import annotations

from .base import Cell, ParamSpec, accumulate, init_bound, sum_rows

NONLINEARITIES = ("relu", "tanh")


class IndRNNMath(Cell):
    name = "indrnn"
    num_gates = 1
    layer_norm = False
    options = {"bias": True, "nonlinearity": "relu"}
    option_samples = {"bias": (False,), "nonlinearity": ("tanh",)}

    def validate(self):
        super().validate()
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'; expected one of {NONLINEARITIES}")

    def param_spec(self, input_size, hidden_size):
        H = hidden_size
        bound = init_bound(H)
        # weight_hh uniform in [-1, 1]: every unit starts with a memory of its own, none growing
        spec = [ParamSpec("weight_ih", (H, input_size), bound=bound), ParamSpec("weight_hh", (H,), bound=1.0)]
        if self.bias:
            spec += [ParamSpec("bias_ih", (H,), bound=bound), ParamSpec("bias_hh", (H,), bound=bound)]
        return spec

    def step(self, ops, p, gx, state):
        (h_prev,) = state  # (B, H)
        mask = p.get("mask_hh")
        h_read = h_prev if mask is None else h_prev * mask  # state dropout on what the weight reads
        a = gx + p["weight_hh"] * h_read
        if self.bias:
            a = a + p["bias_hh"]
        h = ops.tanh(a) if self.nonlinearity == "tanh" else ops.relu(a)
        return (h,), {"h": h, "h_read": h_read}

    def step_backward(self, ops, p, cache, dstate, grads):
        (dh,) = dstate
        h = cache["h"]
        da = dh * (1.0 - h * h) if self.nonlinearity == "tanh" else dh * ops.positive(h)
        if self.bias:
            accumulate(grads, "bias_hh", sum_rows(da))
        accumulate(grads, "weight_hh", sum_rows(da * cache["h_read"]))
        dh_prev = da * p["weight_hh"]
        mask = p.get("mask_hh")
        return da, (dh_prev if mask is None else dh_prev * mask,)
