"""The machinery every sequence module shares: cell -> layer -> direction -> stack.

``RecurrentBase`` takes the constructor and ``forward`` of ``torch.nn.RNNBase`` and holds the same
parameters under the same names, so a ``torch.nn`` ``state_dict`` loads unchanged; the public
classes (``gatedrnn.LSTM``, ...) each name a cell and document it. The cell's options
(``forget_bias``, ``rounds``, ``layer_norm``, ...) are keyword arguments on top.
"""
from __future__ import annotations

import os
import sys
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ...cells import CELLS, make_cell
from ..boundary import (
    InputError,
    check_dropout,
    check_flag,
    check_input,
    check_proj_size,
    check_sequence_sizes,
    sequence_state,
    state_names,
)
from ..generation import lstm_step, stack_step
from .. import triton
from ..functional import DEPRECATED_REFERENCE, keep_dtypes, mix_state, run_layer
from ..native import cpu_autocast, flatten_for_cudnn, native_forward, native_kernel, step_kernel
from ..ops import TORCH_OPS as ops
from ..regularisation import Regularisation, draw_masks

ENGINES = ("auto", "fused", "autograd", "triton")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # .../gatedrnn


def caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside gatedrnn (the user's
    line), however many of the package's own frames are between."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


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
    """The machinery every sequence module shares: a stack of ``num_layers`` layers of one cell,
    optionally bidirectional, with ``torch.nn.RNNBase``'s constructor, attributes and ``forward``.

    A module is one small class: it names its cell (``cell_name``, a key of ``gatedrnn.CELLS``)
    and ``torch.nn``'s name for what it computes (``mode``), and documents itself; the number of
    parts of the state (``h``; ``(h, c)``; more) comes from the cell's ``state_sizes``.
    """

    cell_name: str = ""
    #: ``torch.nn.RNNBase.mode``: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``, ``"RNN_RELU"``, or this
    #: library's name for a computation ``torch.nn`` does not have
    mode: str = ""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, *,
                 engine: str = "auto", device=None, dtype=None, generator=None, **options):
        super().__init__()
        cell_class = CELLS[self.cell_name]
        if "proj_size" in options and "proj_size" not in cell_class.options:
            raise ValueError(f"proj_size argument is only supported for LSTM, not RNN or GRU: "
                             f"{type(self).__name__} got proj_size={options['proj_size']!r}")
        check_dropout(dropout)
        check_flag("bias", bias)
        check_flag("batch_first", batch_first)
        check_flag("bidirectional", bidirectional)
        check_sequence_sizes(input_size, hidden_size, num_layers)
        if "proj_size" in options:
            check_proj_size(options["proj_size"], hidden_size)
        if engine == "reference":  # the autograd loop's name before 0.2
            warnings.warn(DEPRECATED_REFERENCE, DeprecationWarning, stacklevel=caller_stacklevel())
            engine = "autograd"
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        # zoneout, dropout_* and weight_drop are the module's (see regularisation.py), the rest the cell's
        self.regularisation = Regularisation.pop_from(options, cell_class)
        self.generator = generator  # the masks' torch.Generator; None: the global one
        self.cell = make_cell(self.cell_name, bias=bias, **options)
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=caller_stacklevel())
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.engine = bidirectional, engine
        self.proj_size = getattr(self.cell, "proj_size", 0)
        self.num_directions = 2 if bidirectional else 1
        self.state_sizes = self.cell.state_sizes(hidden_size)
        self.state_names = state_names(self.cell)
        self._specs = []  # per (layer, direction): the cell's parameter spec
        self._all_weights = []  # per (layer, direction): the parameter names, as torch.nn.RNNBase
        factory = {"device": device, "dtype": dtype}
        for k in range(num_layers):
            layer_input = input_size if k == 0 else self.num_directions * self.state_sizes[0]
            for d in range(self.num_directions):
                suffix = f"_l{k}" + ("_reverse" if d else "")
                spec = self.cell.param_spec(layer_input, hidden_size)
                self._specs.append((suffix, spec))
                self._all_weights.append([s.name + suffix for s in spec])
                for s in spec:
                    self.register_parameter(s.name + suffix, nn.Parameter(torch.empty(s.shape, **factory)))
        self._flat_weights_names = [name for names in self._all_weights for name in names]
        self._init_flat_weights()
        self.reset_parameters()

    # -- torch.nn.RNNBase's attributes ------------------------------------------------------
    def _init_flat_weights(self) -> None:
        self._flat_weights = [getattr(self, name, None) for name in self._flat_weights_names]
        self.flatten_parameters()

    def __setattr__(self, name, value) -> None:
        names = self.__dict__.get("_flat_weights_names")
        if names is not None and name in names:  # keep _flat_weights current, as torch.nn.RNNBase does
            self._flat_weights[names.index(name)] = value
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        """``.to()``, ``.double()``, ``.half()``, ...: then ``_flat_weights`` holds the new tensors."""
        ret = super()._apply(fn, recurse)
        self._init_flat_weights()
        self.__dict__.pop("_step_cache", None)
        self.__dict__.pop("_compiled_step", None)
        return ret

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        # the replica's parameters are set afterwards; its lists must not be the original's
        replica._flat_weights, replica._flat_weights_names = self._flat_weights[:], self._flat_weights_names[:]
        return replica

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """The parameters per layer and direction (``l0``, ``l0_reverse``, ``l1``, ...), each
        list in ``torch.nn``'s order (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``,
        ``weight_hr``) with the cell's own parameters where its spec puts them."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """As ``torch.nn.RNNBase.flatten_parameters``: on CUDA with cuDNN, a module that ``auto``
        hands to cuDNN gets its weights in one contiguous buffer; elsewhere this does nothing."""
        flatten_for_cudnn(self)

    def reset_parameters(self) -> None:
        for suffix, spec in self._specs:
            for s in spec:
                init_tensor(s, getattr(self, s.name + suffix))

    def extra_repr(self) -> str:
        """``torch.nn``'s fields in its order and form, then the engine and the options changed."""
        s = f"{self.input_size}, {self.hidden_size}"
        for key, default in (("proj_size", 0), ("num_layers", 1), ("bias", True), ("batch_first", False),
                             ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        if self.engine != "auto":
            s += f", engine={self.engine!r}"
        shown = ("bias", "proj_size", "nonlinearity")  # above, or (nonlinearity) not in torch.nn's repr
        changed = {k: v for k, v in self.cell.config.items() if v != type(self.cell).options[k] and k not in shown}
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

    # -- forward --------------------------------------------------------------------------
    def forward(self, input, hx=None):
        """See the class's documentation: ``input`` ``(T, B, I)``, ``(B, T, I)`` or ``(T, I)``, or a
        ``PackedSequence``; returns ``(output, h_n)``, or ``(output, (h_n, c_n, ...))``."""
        name = type(self).__name__
        is_packed = isinstance(input, PackedSequence)
        x = input.data if is_packed else input
        check_input(name, x, (2,) if is_packed else (2, 3), self.input_size, self.weight_ih_l0,
                    "PackedSequence data" if is_packed else "input")
        batched = is_packed or x.dim() == 3
        if is_packed:
            B = int(input.batch_sizes[0])
        else:
            B = x.shape[0 if self.batch_first else 1] if batched else 1
        state0 = self._initial_state(hx, B, x, batched)  # each (L*D, B, size), caller's batch order
        steps = x.shape[1 if batched and self.batch_first else 0]
        if not is_packed and steps == 0:
            raise InputError(f"Expected sequence length to be larger than 0 in RNN ({name}: input of shape "
                             f"{tuple(x.shape)} has no time steps)")
        if B == 0:  # torch.nn's empty result, in every engine
            return self._empty_forward(input, x, state0, batched)
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
        return out, self._public_state(state_n)

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
        and the other LSTM-family layers ``generation.lstm_step``, the same step in fewer operations;
        under ``torch.no_grad`` on the CPU, ``generation.stack_step`` runs the whole stack in one
        compiled call where the compiled kernels are built (``COMPILED_STEP`` in capability.py).
        In training mode each call is a sequence of its own: the variational masks (dropouts,
        ``weight_drop``) are drawn anew per call, not once for the steps of a sequence.
        """
        if self.bidirectional:
            raise ValueError(f"{type(self).__name__}.step runs forward in time only; a bidirectional "
                             "module needs the whole sequence: call forward")
        fast = stack_step(self, input, hx)  # the whole stack in one compiled call, where it applies
        if fast is not None:
            return fast
        check_input(type(self).__name__, input, (1, 2), self.input_size, self.weight_ih_l0, "step input")
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
        return x, self._public_state(state_n)

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

    # -- state at the boundary -----------------------------------------------------------------
    def _public_state(self, state: tuple):
        """The state as ``forward`` returns it: ``h`` alone for a one-part state, else the tuple."""
        return state if len(state) > 1 else state[0]

    def _empty_forward(self, input, x, state0, batched):
        """An empty batch: outputs and states with no rows, as ``torch.nn`` returns them, still
        attached to the parameters' graph (a sum over them is a zero gradient)."""
        zero = sum(p.sum() for p in self._flat_weights if p is not None) * 0  # ties the graph, no value
        out_size = self.num_directions * self.state_sizes[0]
        if isinstance(input, PackedSequence):
            out = PackedSequence(x.new_zeros((0, out_size)) + zero, input.batch_sizes, input.sorted_indices,
                                 input.unsorted_indices)
        else:
            shape = list(x.shape[:-1]) + [out_size]
            out = x.new_zeros(shape) + zero + x.sum() * 0
        return out, self._public_state(tuple(s + zero for s in state0))

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
        n = self.num_layers * self.num_directions
        if hx is None:
            return tuple(x.new_zeros((n, B, size)) for size in self.state_sizes)
        shapes = [(n, B, size) for size in self.state_sizes]
        return sequence_state(type(self).__name__, hx, self.state_names, shapes, x, batched)


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
