"""Single-step modules for generation: ``gatedrnn.LSTMCell`` and the others.

    cell = gatedrnn.LSTMCell(I, H)               # weight_ih (4H, I), weight_hh (4H, H), bias_ih, bias_hh
    h, c = cell(x_t, (h, c))                      # x_t (B, I) or (I,); h (B, R), c (B, H)

Each runs one ``cell.step`` of ``gatedrnn.cells`` with torch ops, differentiated by autograd.
Parameter names are ``torch.nn.LSTMCell``'s (``weight_ih``, ``weight_hh``, ``bias_ih``,
``bias_hh``) plus the cell's extras (``weight_peephole``, ``weight_hr``, ``weight_q``, ...), so a
``torch.nn.LSTMCell``/``GRUCell``/``RNNCell`` ``state_dict`` loads unchanged, and the layer-0
parameters of a sequence module map onto them by dropping the ``_l0`` suffix.
"""
from __future__ import annotations

import torch
from torch import nn

from ..cells import CELLS, make_cell
from .ops import keep_dtypes
from .modules import InputError, check_like_params, init_tensor, state_tuple
from .ops import TORCH_OPS as ops
from .regularisation import Regularisation, zoneout_step


class CellBase(nn.Module):
    """One step of one cell: ``forward(input, hx=None)`` with ``torch.nn.LSTMCell``'s semantics."""

    cell_name: str = ""

    def __init__(self, input_size, hidden_size, bias=True, *, device=None, dtype=None, generator=None,
                 **cell_options):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        # zoneout (per step, so a step can draw it); the per-sequence masks need the sequence modules
        self.regularisation = Regularisation.pop_from(cell_options, CELLS[self.cell_name])
        sequence_only = sorted(k for k in self.regularisation.changed() if not k.startswith("zoneout"))
        if sequence_only:
            raise ValueError(f"{type(self).__name__} takes zoneout only, got {sequence_only}: one mask per "
                             "sequence needs the whole sequence, in the sequence modules (gatedrnn.LSTM, ...)")
        self.generator = generator  # zoneout's torch.Generator; None: the global one
        self.cell = make_cell(self.cell_name, bias=bias, **cell_options)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.state_sizes = self.cell.state_sizes(hidden_size)
        self._spec = self.cell.param_spec(input_size, hidden_size)
        for s in self._spec:
            self.register_parameter(s.name, nn.Parameter(torch.empty(s.shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for s in self._spec:
            init_tensor(s, getattr(self, s.name))

    def extra_repr(self) -> str:
        changed = {k: v for k, v in self.cell.config.items() if v != type(self.cell).options[k]}
        changed.update(self.regularisation.changed())
        return f"{self.input_size}, {self.hidden_size}" + "".join(f", {k}={v!r}" for k, v in changed.items())

    def forward(self, input, hx=None):
        """``input`` ``(B, I)`` or ``(I,)``; returns ``h'`` or ``(h', c')`` shaped like ``hx``."""
        name = type(self).__name__
        if not isinstance(input, torch.Tensor):
            raise InputError(f"{name}: input must be a tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise InputError(f"{name}: Expected input to be 1-D or 2-D, got {input.dim()}-D tensor "
                             f"of shape {tuple(input.shape)}")
        if input.shape[-1] != self.input_size:
            raise InputError(f"{name}: input has inconsistent input_size: expected {self.input_size}, "
                             f"got {input.shape[-1]} (input shape {tuple(input.shape)})")
        check_like_params(name, "input", input, self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        state = self._state(hx, x, batched)
        params = {s.name: getattr(self, s.name) for s in self._spec}
        gx, _ = self.cell.input_proj(ops, params, x)
        prev = state
        state = keep_dtypes(self.cell.step(ops, params, gx, state)[0], prev)  # autocast: see keep_dtypes
        if self.regularisation.active(self.training):
            state = zoneout_step(self.regularisation, self.training, self.generator, prev, state)
        if not batched:
            state = tuple(s.squeeze(0) for s in state)
        return state if self.cell.has_cell_state else state[0]

    def _state(self, hx, x, batched):
        name = type(self).__name__
        B = x.shape[0]
        if hx is None:
            return tuple(x.new_zeros((B, size)) for size in self.state_sizes)
        hx = state_tuple(name, self.cell, hx, self.cell.state_names)
        out = []
        for s, size, sname in zip(hx, self.state_sizes, self.cell.state_names):
            expected = (B, size) if batched else (size,)
            if not isinstance(s, torch.Tensor) or tuple(s.shape) != expected:
                got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
                raise InputError(f"{name}: expected {sname} of shape {expected}, got {got}")
            if s.dtype != x.dtype or s.device != x.device:
                raise InputError(f"{name}: {sname} is {s.dtype} on {s.device}, "
                                 f"expected the input's {x.dtype} on {x.device}")
            out.append(s if batched else s.unsqueeze(0))
        return tuple(out)


def _cell_module(cell_name: str, class_name: str, doc: str):
    return type(class_name, (CellBase,), {"cell_name": cell_name, "__doc__": doc, "__module__": __name__})


class RNNCell(CellBase):
    """Elman RNN step, drop-in for ``torch.nn.RNNCell`` (``nonlinearity`` tanh or relu)."""

    cell_name = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, device=None, dtype=None,
                 **cell_options):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype, nonlinearity=nonlinearity,
                         **cell_options)


LSTMCell = _cell_module("lstm", "LSTMCell", "LSTM step, drop-in for ``torch.nn.LSTMCell`` (plus ``proj_size``, "
                        "``forget_bias``, ...).")
GRUCell = _cell_module("gru", "GRUCell", "GRU step, drop-in for ``torch.nn.GRUCell``.")
PeepholeLSTMCell = _cell_module("peephole", "PeepholeLSTMCell", "Peephole LSTM step (``weight_peephole``).")
CIFGLSTMCell = _cell_module("cifg", "CIFGLSTMCell", "Coupled input-forget gate LSTM step.")
MogrifierLSTMCell = _cell_module("mogrifier", "MogrifierLSTMCell", "Mogrifier LSTM step (``rounds``, ``rank``).")

SLSTMCell = _cell_module("slstm", "SLSTMCell", "sLSTM step (``num_heads``); state ``(h, c, n, m)``.")
MinGRUCell = _cell_module("mingru", "MinGRUCell", "minGRU step.")
MinLSTMCell = _cell_module("minlstm", "MinLSTMCell", "minLSTM step.")
IndRNNCell = _cell_module("indrnn", "IndRNNCell", "IndRNN step (``nonlinearity`` relu or tanh).")

CELL_MODULES = {m.cell_name: m for m in (RNNCell, LSTMCell, GRUCell, PeepholeLSTMCell, CIFGLSTMCell, MogrifierLSTMCell,
                                         SLSTMCell, MinGRUCell, MinLSTMCell, IndRNNCell)}
assert set(CELL_MODULES) == set(CELLS)
