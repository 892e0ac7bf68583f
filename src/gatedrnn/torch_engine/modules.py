"""``torch.nn``-compatible recurrent modules for every cell: cell -> layer -> direction -> stack.

``gatedrnn.LSTM(...)`` takes the constructor and ``forward`` of ``torch.nn.LSTM`` and holds the
same parameters under the same names, so a ``torch.nn`` ``state_dict`` loads unchanged. The cell's
options (``forget_bias``, ``rounds``, ``layer_norm``, ...) are keyword arguments on top.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import CELLS, make_cell
from .functional import run_layer

ENGINES = ("auto", "fused", "reference")


def init_tensor(spec, tensor: torch.Tensor) -> None:
    """Initialise ``tensor`` in place as ``spec`` says (the torch twin of ``cells.init_array``)."""
    with torch.no_grad():
        if spec.init == "uniform":
            tensor.uniform_(-spec.bound, spec.bound)
        elif spec.init == "ones":
            tensor.fill_(1.0)
        elif spec.init == "zeros":
            tensor.zero_()
        else:
            raise ValueError(f"unknown init {spec.init!r}")
        flat = tensor.view(-1)
        for start, stop, value in spec.fill:
            flat[start:stop] = value


class RecurrentBase(nn.Module):
    """A stack of ``num_layers`` layers of one cell, optionally bidirectional."""

    cell_name: str = ""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, engine="auto", device=None, dtype=None,
                 **cell_options):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability "
                             f"of an element being zeroed, got {dropout!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.cell = make_cell(self.cell_name, bias=bias, **cell_options)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.engine = bidirectional, engine
        self.proj_size = getattr(self.cell, "proj_size", 0)
        self.num_directions = 2 if bidirectional else 1
        self.state_sizes = self.cell.state_sizes(hidden_size)
        self._specs = []  # per (layer, direction): the cell's parameter spec
        factory = {"device": device, "dtype": dtype}
        for k in range(num_layers):
            layer_input = input_size if k == 0 else self.num_directions * self.state_sizes[0]
            for d in range(self.num_directions):
                suffix = f"_l{k}" + ("_reverse" if d else "")
                spec = self.cell.param_spec(layer_input, hidden_size)
                self._specs.append((suffix, spec))
                for s in spec:
                    self.register_parameter(s.name + suffix, nn.Parameter(torch.empty(s.shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for suffix, spec in self._specs:
            for s in spec:
                init_tensor(s, getattr(self, s.name + suffix))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for key, default in (("batch_first", False), ("dropout", 0.0), ("bidirectional", False), ("engine", "auto")):
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)!r}"
        changed = {k: v for k, v in self.cell.config.items() if v != type(self.cell).options[k]}
        return s + "".join(f", {k}={v!r}" for k, v in changed.items())

    def layer_params(self, layer: int, direction: int = 0) -> dict:
        """The single-layer parameter dict (``weight_ih``, ...) of one layer and direction."""
        suffix, spec = self._specs[layer * self.num_directions + direction]
        return {s.name: getattr(self, s.name + suffix) for s in spec}

    def resolve_engine(self, x) -> str:
        return "fused" if self.engine == "auto" else self.engine

    # -- forward --------------------------------------------------------------------------
    def forward(self, input, hx=None):
        lengths = sorted_indices = None
        is_packed = isinstance(input, PackedSequence)
        if is_packed:
            sorted_indices = input.sorted_indices
            packed_in = input
            x, lengths = pad_packed_sequence(input)  # (T, B, I), original batch order
            batched = True
        else:
            x = input
            if x.dim() not in (2, 3):
                raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got {x.dim()}D tensor")
            batched = x.dim() == 3
            if not batched:
                x = x.unsqueeze(1)
            elif self.batch_first:
                x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}")
        T, B = x.shape[0], x.shape[1]
        state0 = self._initial_state(hx, B, x, batched)
        keep = valid = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
            valid = (steps < lengths.to(x.device).unsqueeze(0)).to(x.dtype).unsqueeze(-1)  # (T, B, 1)
            keep = tuple(1.0 - valid for _ in self.state_sizes)
        engine = self.resolve_engine(x)
        finals = [[] for _ in self.state_sizes]
        layer_input = x
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                idx = k * self.num_directions + d
                s0 = tuple(s[idx] for s in state0)
                xd = layer_input if d == 0 else reverse_padded(layer_input, lengths)
                y, sn = run_layer(self.cell, self.layer_params(k, d), xd, s0, keep, engine)
                if valid is not None:
                    y = y * valid
                outs.append(y if d == 0 else reverse_padded(y, lengths))
                for f, s in zip(finals, sn):
                    f.append(s)
            layer_input = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        out = layer_input
        state_n = tuple(torch.stack(f) for f in finals)  # each (D*L, B, size)
        if is_packed:
            out = pack_padded_sequence(out, lengths, enforce_sorted=False)
            out = PackedSequence(out.data if sorted_indices is None else out.data, packed_in.batch_sizes,
                                 packed_in.sorted_indices, packed_in.unsorted_indices)
        elif not batched:
            out = out.squeeze(1)
            state_n = tuple(s.squeeze(1) for s in state_n)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (state_n if self.cell.has_cell_state else state_n[0])

    def _initial_state(self, hx, B, x, batched):
        n = self.num_layers * self.num_directions
        if hx is None:
            return tuple(x.new_zeros((n, B, size)) for size in self.state_sizes)
        hx = tuple(hx) if self.cell.has_cell_state else (hx,)
        if len(hx) != len(self.state_sizes):
            raise ValueError(f"{type(self).__name__} expects hx as {len(self.state_sizes)} tensor(s), got {len(hx)}")
        out = []
        for s, size, name in zip(hx, self.state_sizes, ("h_0", "c_0")):
            if not batched:
                if s.dim() != 2:
                    raise RuntimeError(f"For unbatched 2-D input, {name} should also be 2-D but got {s.dim()}-D tensor")
                s = s.unsqueeze(1)
            if tuple(s.shape) != (n, B, size):
                raise RuntimeError(f"Expected hidden size {(n, B, size)}, got {tuple(s.shape)} for {name}")
            if s.dtype != x.dtype or s.device != x.device:
                raise ValueError(f"{name} is {s.dtype} on {s.device}, but the input is {x.dtype} on {x.device}")
            out.append(s)
        return tuple(out)


def reverse_padded(x, lengths=None):
    """Reverse each sequence of ``x`` ``(T, B, F)`` in time within its length (padding stays)."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    n = lengths.to(x.device).unsqueeze(0)  # (1, B)
    idx = torch.where(t < n, n - 1 - t, t)  # (T, B)
    return x.gather(0, idx.unsqueeze(-1).expand_as(x))


def _module(cell_name: str, class_name: str, doc: str):
    return type(class_name, (RecurrentBase,), {"cell_name": cell_name, "__doc__": doc, "__module__": __name__})


RNN = _module("rnn", "RNN", "Elman RNN, drop-in for ``torch.nn.RNN`` (``nonlinearity`` tanh or relu).")
LSTM = _module("lstm", "LSTM", "LSTM, drop-in for ``torch.nn.LSTM`` (``proj_size``, ``forget_bias``, ...).")
GRU = _module("gru", "GRU", "GRU, drop-in for ``torch.nn.GRU``.")
PeepholeLSTM = _module("peephole", "PeepholeLSTM", "LSTM with diagonal peepholes (``weight_peephole_l{k}``).")
CIFGLSTM = _module("cifg", "CIFGLSTM", "Coupled input-forget gate LSTM: three blocks f, g, o and i = 1 - f.")
MogrifierLSTM = _module("mogrifier", "MogrifierLSTM", "Mogrifier LSTM (``rounds``, ``rank``).")

MODULES = {m.cell_name: m for m in (RNN, LSTM, GRU, PeepholeLSTM, CIFGLSTM, MogrifierLSTM)}
assert set(MODULES) == set(CELLS)


def layer(cell_name: str, input_size: int, hidden_size: int, **kwargs) -> RecurrentBase:
    """The module for a cell name: ``layer("mogrifier", 32, 64, num_layers=2, rounds=4)``."""
    make_cell(cell_name)  # unknown names fail here with the close ones suggested
    return MODULES[cell_name](input_size, hidden_size, **kwargs)
