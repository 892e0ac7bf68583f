"""``torch.nn``-compatible recurrent modules for every cell: cell -> layer -> direction -> stack.

``gatedrnn.LSTM(...)`` takes the constructor and ``forward`` of ``torch.nn.LSTM`` and holds the
same parameters under the same names, so a ``torch.nn`` ``state_dict`` loads unchanged. The cell's
options (``forget_bias``, ``rounds``, ``layer_norm``, ...) are keyword arguments on top.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import CELLS, make_cell
from .generation import lstm_step
from . import triton
from .functional import DEPRECATED_REFERENCE, keep_dtypes, mix_state, run_layer
from .native import cpu_autocast, native_forward, native_kernel, step_kernel
from .ops import TORCH_OPS as ops
from .regularisation import Regularisation, draw_masks

ENGINES = ("auto", "fused", "autograd", "triton")


class InputError(ValueError, RuntimeError):
    """Bad input to a module: says what was expected and what came. A ``RuntimeError`` too,
    which is what ``torch.nn``'s recurrent modules raise for the same mistakes."""


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
                 generator=None, **cell_options):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability "
                             f"of an element being zeroed, got {dropout!r}")
        if engine == "reference":  # the autograd loop's name before 0.2
            warnings.warn(DEPRECATED_REFERENCE, DeprecationWarning, stacklevel=2)
            engine = "autograd"
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        # zoneout, dropout_* and weight_drop are the module's (see regularisation.py), the rest the cell's
        self.regularisation = Regularisation.pop_from(cell_options, CELLS[self.cell_name])
        self.generator = generator  # the masks' torch.Generator; None: the global one
        self.cell = make_cell(self.cell_name, bias=bias, **cell_options)
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=2)
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
        changed.update(self.regularisation.changed())
        return s + "".join(f", {k}={v!r}" for k, v in changed.items())

    def layer_params(self, layer: int, direction: int = 0) -> dict:
        """The single-layer parameter dict (``weight_ih``, ...) of one layer and direction."""
        suffix, spec = self._specs[layer * self.num_directions + direction]
        return {s.name: getattr(self, s.name + suffix) for s in spec}

    def resolve_engine(self, x) -> str:
        """``"torch"`` (PyTorch's own kernels), ``"fused"``, ``"triton"`` (the GPU engine) or
        ``"autograd"`` for input ``x``."""
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            # autograd Functions do not export. torch.nn's kernels export as one ONNX LSTM/GRU/RNN
            # node that takes any sequence length, but not with projections; everything else
            # runs the plain loop, traced into ordinary ops unrolled over the traced length
            native = (self.engine == "auto" and not self.proj_size and not self.regularisation.active(self.training)
                      and native_kernel(self, x) is not None)
            return "torch" if native else "autograd"
        if self.engine != "auto":
            return self.engine
        ours = "triton" if triton.usable(self.cell, x) else "fused"  # on a CUDA device, the GPU engine
        if self.regularisation.active(self.training):  # masks torch.nn's kernels cannot take
            return ours
        return "torch" if native_kernel(self, x) is not None else ours

    def flatten_parameters(self) -> None:
        """Kept so code written for ``torch.nn`` RNNs runs unchanged; the weights stay as they are."""

    # -- forward --------------------------------------------------------------------------
    def forward(self, input, hx=None):
        is_packed = isinstance(input, PackedSequence)
        x = input.data if is_packed else input
        self._check_input(x, (2,) if is_packed else (2, 3), "PackedSequence data" if is_packed else "input")
        batched = is_packed or x.dim() == 3
        if is_packed:
            B = int(input.batch_sizes[0])
        else:
            B = x.shape[0 if self.batch_first else 1] if batched else 1
        state0 = self._initial_state(hx, B, x, batched)  # each (L*D, B, size), caller's batch order
        engine = self.resolve_engine(x)
        if engine == "torch":
            return native_forward(self, native_kernel(self, x), input, state0, batched)
        lengths = None
        if is_packed:
            x, lengths = pad_packed_sequence(input)  # (T, B, I), original batch order
        elif not batched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        out, state_n = self._forward_layers(x, state0, lengths, engine)
        if is_packed:
            out = repack(out, lengths, input)
        elif not batched:
            out = out.squeeze(1)
            state_n = tuple(s.squeeze(1) for s in state_n)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (state_n if self.cell.has_cell_state else state_n[0])

    def _forward_layers(self, x, state0, lengths, engine):
        """The stack over time-major ``x`` ``(T, B, I)``; ``lengths`` ``(B,)`` for packed input."""
        T = x.shape[0]
        valid = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
            valid = (steps < lengths.to(x.device).unsqueeze(0)).to(x.dtype).unsqueeze(-1)  # (T, B, 1)
        masks = draw_masks(self, T, x.shape[1], x)
        finals = [[] for _ in self.state_sizes]
        layer_input = x if masks.input is None else x * masks.input
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                idx = k * self.num_directions + d
                s0 = tuple(s[idx] for s in state0)
                xd = layer_input if d == 0 else reverse_padded(layer_input, lengths)
                keep = masks.keep(idx, len(self.state_sizes), valid)  # zoneout and padding
                params = masks.layer_params(idx, self.layer_params(k, d))  # weight_drop, dropout_state
                y, sn = run_layer(self.cell, params, xd, s0, keep, engine)
                if valid is not None:
                    y = y * valid
                outs.append(y if d == 0 else reverse_padded(y, lengths))
                for f, s in zip(finals, sn):
                    f.append(s)
            layer_input = self._between_layers(outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1), k, masks)
        if masks.output is not None:
            layer_input = layer_input * masks.output
        return layer_input, tuple(torch.stack(f) for f in finals)  # (T, B, D*R), each (D*L, B, size)

    # -- one step of the whole stack, for generation -----------------------------------------
    def step(self, input, hx=None):
        """One time step through every layer: ``input`` ``(B, I)`` or unbatched ``(I,)``, ``hx``
        as ``forward`` takes it; returns ``(output (B, R), h_n)`` or ``(output, (h_n, c_n))``.

        The same result as ``forward`` on a length-1 sequence, without the sequence machinery:
        each layer's ``cell.step`` runs on parameter dicts built once and reused across calls.
        Outside ``engine="autograd"``, plain ``lstm``, ``gru`` and ``rnn`` layers run PyTorch's
        single-step kernels instead, the ones ``torch.nn.LSTMCell``/``GRUCell``/``RNNCell`` call,
        and the other LSTM-family layers ``generation.lstm_step``, the same step in fewer operations.
        In training mode each call is a sequence of its own: the variational masks (dropouts,
        ``weight_drop``) are drawn anew per call, not once for the steps of a sequence.
        """
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step runs forward in time only; a bidirectional "
                             "module needs the whole sequence: call forward")
        self._check_input(input, (1, 2), "step input")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        state0 = self._initial_state(hx, x.shape[0], x, batched)
        masks = draw_masks(self, 1, x.shape[0], x)  # a step is a sequence of length 1
        if masks.input is not None:
            x = x * masks.input
        finals = [[] for _ in self.state_sizes]
        native = self.engine != "autograd" and not cpu_autocast(x)
        layers = zip(*(s.unbind(0) for s in state0))  # per layer, its (h, c)
        for k, (cached, kernel, prev) in enumerate(zip(*self._step_params(), layers)):
            params = masks.layer_params(k, cached)
            # the kernels hold the cached parameters: not for weights this call drops (weight_drop,
            # dropout_state), which come as a new dict
            if native and kernel is not None and params is cached and x.dtype == params["weight_ih"].dtype:
                state = tuple(kernel(x, prev))
            else:
                gx, _ = self.cell.input_proj(ops, params, x)
                state = keep_dtypes(self.cell.step(ops, params, gx, prev)[0], prev)  # autocast: see keep_dtypes
            keep = masks.keep(k, len(self.state_sizes))
            if keep is not None:  # zoneout, mixed as run_layer mixes it
                state = mix_state(tuple(None if m is None else m[0] for m in keep), prev, state)
            for f, s in zip(finals, state):
                f.append(s)
            x = self._between_layers(state[0], k, masks)
        if masks.output is not None:
            x = x * masks.output
        state_n = tuple(torch.stack(f) for f in finals)  # each (L, B, size)
        if not batched:
            x = x.squeeze(0)
            state_n = tuple(s.squeeze(1) for s in state_n)
        return x, (state_n if self.cell.has_cell_state else state_n[0])

    def _step_params(self) -> tuple:
        """Per-layer parameter dicts and single-step kernels (``native.step_kernel``, else
        ``generation.lstm_step``; ``None`` where the cell's own step runs), rebuilt only when a
        parameter object was replaced or moved (``.to()`` of a dtype or device)."""
        current = tuple(self._parameters.values())
        key = (tuple(map(id, current)), current[0].dtype, current[0].device)  # .to() moves them all
        cached = self.__dict__.get("_step_cache")
        if cached is None or cached[0] != key:
            dicts = [self.layer_params(k) for k in range(self.num_layers)]
            cached = (key, (dicts, [step_kernel(self.cell, d) or lstm_step(self.cell, d) for d in dicts]))
            self.__dict__["_step_cache"] = cached
        return cached[1]

    # -- validation at the boundary ---------------------------------------------------------
    def _check_input(self, x, dims, what):
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name}: {what} must be a tensor or PackedSequence, got {type(x).__name__}")
        if x.dim() not in dims:
            expected = " or ".join(f"{d}-D" for d in dims)
            raise InputError(f"{name}: expected {what} to be {expected}, got {x.dim()}-D tensor of shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise InputError(f"{name}: input.size(-1) must be equal to input_size. "
                             f"Expected {self.input_size}, got {x.shape[-1]} (input shape {tuple(x.shape)})")
        check_like_params(name, what, x, self.weight_ih_l0)

    def _between_layers(self, x, k, masks):
        """What the output of layer ``k`` goes through before layer ``k + 1`` reads it."""
        if k == self.num_layers - 1:
            return x
        if self.dropout and self.training:
            x = nn.functional.dropout(x, self.dropout, training=True)
        if masks.between and masks.between[k] is not None:
            x = x * masks.between[k]
        return x

    def _initial_state(self, hx, B, x, batched):
        """``hx`` validated against the input, as a tuple of ``(L*D, B, size)`` tensors."""
        name = type(self).__name__
        n = self.num_layers * self.num_directions
        if hx is None:
            return tuple(x.new_zeros((n, B, size)) for size in self.state_sizes)
        names = tuple(f"{n}_0" for n in self.cell.state_names)
        hx = state_tuple(name, self.cell, hx, names)
        out = []
        for s, size, sname in zip(hx, self.state_sizes, names):
            if not isinstance(s, torch.Tensor):
                raise InputError(f"{name}: {sname} must be a tensor, got {type(s).__name__}")
            expected_dim = 3 if batched else 2
            if s.dim() != expected_dim:
                kind = "batched" if batched else "unbatched"
                raise InputError(f"{name}: for {kind} input, {sname} should be {expected_dim}-D "
                                 f"(L*D{', B' if batched else ''}, {size}), got {s.dim()}-D tensor of shape {tuple(s.shape)}")
            if not batched:
                s = s.unsqueeze(1)
            if tuple(s.shape) != (n, B, size):
                expected = (n, B, size) if batched else (n, size)
                got = tuple(s.shape) if batched else (s.shape[0], s.shape[2])
                raise InputError(f"{name}: expected {sname} of shape {expected} "
                                 f"(num_layers*num_directions, batch, {size}), got {got}")
            if s.dtype != x.dtype or s.device != x.device:
                raise InputError(f"{name}: {sname} is {s.dtype} on {s.device}, "
                                 f"expected the input's {x.dtype} on {x.device}")
            out.append(s)
        return tuple(out)


def state_tuple(name, cell, hx, names) -> tuple:
    """``hx`` as a tuple of state tensors: ``(h, c)`` for the LSTM family, ``(h, c, n, m)`` for the
    sLSTM, ``h`` alone otherwise."""
    if cell.has_cell_state:
        if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
            got = (f"a tensor of shape {tuple(hx.shape)}" if isinstance(hx, torch.Tensor)
                   else f"{len(hx)} element(s)" if isinstance(hx, (tuple, list)) else type(hx).__name__)
            raise InputError(f"{name} expects hx as a tuple ({', '.join(names)}), got {got}")
        return tuple(hx)
    if not isinstance(hx, torch.Tensor):
        raise InputError(f"{name} expects hx as one tensor {names[0]}, got {type(hx).__name__}")
    return (hx,)


def check_like_params(name, what, x, weight):
    """Refuse an input whose dtype or device differs from the parameters' (autocast aside)."""
    if x.device != weight.device:
        raise InputError(f"{name}: {what} is on {x.device}, expected the parameters' device {weight.device}")
    if not x.is_floating_point():
        raise InputError(f"{name}: {what} must be floating point, got {x.dtype}")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise InputError(f"{name}: {what} is {x.dtype}, expected the parameters' dtype {weight.dtype} "
                         "(convert the module with .to(dtype) or the input)")


def repack(out, lengths, packed_in: PackedSequence) -> PackedSequence:
    """Pack ``out`` ``(T, B, F)`` (original batch order) with ``packed_in``'s own sorting, so
    sequences of equal length keep the order the input's ``sorted_indices`` gave them."""
    if packed_in.sorted_indices is not None:
        out = out.index_select(1, packed_in.sorted_indices)
        lengths = lengths.index_select(0, packed_in.sorted_indices.to(lengths.device))
    data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
    return PackedSequence(data, packed_in.batch_sizes, packed_in.sorted_indices, packed_in.unsorted_indices)


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

SLSTM = _module("slstm", "SLSTM", "sLSTM of xLSTM (``num_heads``); state ``(h, c, n, m)``.")
MinGRU = _module("mingru", "MinGRU", "minGRU: gates read only the input; no ``weight_hh``.")
MinLSTM = _module("minlstm", "MinLSTM", "minLSTM: normalised gates that read only the input; no ``weight_hh``.")
IndRNN = _module("indrnn", "IndRNN", "IndRNN: one recurrent weight per unit (``nonlinearity`` relu or tanh).")

MODULES = {m.cell_name: m for m in (RNN, LSTM, GRU, PeepholeLSTM, CIFGLSTM, MogrifierLSTM, SLSTM, MinGRU, MinLSTM,
                                    IndRNN)}
assert set(MODULES) == set(CELLS)


def layer(cell_name: str, input_size: int, hidden_size: int, **kwargs) -> RecurrentBase:
    """The module for a cell name: ``layer("mogrifier", 32, 64, num_layers=2, rounds=4)``."""
    make_cell(cell_name)  # unknown names fail here with the close ones suggested
    return MODULES[cell_name](input_size, hidden_size, **kwargs)
