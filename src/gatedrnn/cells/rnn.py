"""Elman RNN: ``h_t = act(proj_ih(x_t) + proj_hh(h_{t-1}))``, ``act`` tanh or relu."""
from __future__ import annotations

from .base import Cell

NONLINEARITIES = ("tanh", "relu")


class RNNMath(Cell):
    name = "rnn"
    num_gates = 1
    options = {"bias": True, "layer_norm": False, "nonlinearity": "tanh"}
    option_samples = {"bias": (False,), "layer_norm": (True,), "nonlinearity": ("relu",)}

    def validate(self):
        super().validate()
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'; expected one of {NONLINEARITIES}")

    def param_spec(self, input_size, hidden_size):
        return self.linear_spec(input_size, hidden_size, hidden_size)

    def step(self, ops, p, gx, state):
        (h_prev,) = state
        gh, hh_cache = self.project(ops, p, h_prev, "hh")
        a = gx + gh
        h = ops.tanh(a) if self.nonlinearity == "tanh" else ops.relu(a)
        return (h,), {"h": h, "hh": hh_cache}

    def step_backward(self, ops, p, cache, dstate, grads):
        (dh,) = dstate
        h = cache["h"]
        da = dh * (1.0 - h * h) if self.nonlinearity == "tanh" else dh * ops.positive(h)
        dh_prev = self.project_backward(ops, p, cache["hh"], da, "hh", grads)
        return da, (dh_prev,)
