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
from ..cells.rnn import NONLINEARITIES
from .boundary import (
    cell_state,
    check_cell_sizes,
    check_flag,
    check_input,
    state_names,
)
from .ops import keep_dtypes
from .modules.base import init_tensor
from .modules.docs import documented
from .ops import TORCH_OPS as ops
from .regularisation import Regularisation, zoneout_step


class CellBase(nn.Module):
    """One step of one cell: ``forward(input, hx=None)`` with ``torch.nn.LSTMCell``'s semantics.

    A cell module is a small class naming its cell (``cell_name``) and documenting it; the
    number of parts of the state comes from the cell's ``state_sizes``.
    """

    cell_name: str = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *, device=None, dtype=None,
                 generator=None, **options):
        super().__init__()
        check_cell_sizes(input_size, hidden_size)
        check_flag("bias", bias)
        # zoneout (per step, so a step can draw it); the per-sequence masks need the sequence modules
        self.regularisation = Regularisation.pop_from(options, CELLS[self.cell_name])
        sequence_only = sorted(k for k in self.regularisation.changed() if not k.startswith("zoneout"))
        if sequence_only:
            raise ValueError(f"{type(self).__name__} takes zoneout only, got {sequence_only}: one mask per "
                             "sequence needs the whole sequence, in the sequence modules (gatedrnn.LSTM, ...)")
        self.generator = generator  # zoneout's torch.Generator; None: the global one
        self.cell = make_cell(self.cell_name, bias=bias, **options)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.state_sizes = self.cell.state_sizes(hidden_size)
        self.state_names = state_names(self.cell)
        self._spec = self.cell.param_spec(input_size, hidden_size)
        for s in self._spec:
            self.register_parameter(s.name, nn.Parameter(torch.empty(s.shape, device=device, dtype=dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for s in self._spec:
            init_tensor(s, getattr(self, s.name))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        if self.cell.config.get("nonlinearity") != type(self.cell).options.get("nonlinearity"):
            s += f", nonlinearity={self.cell.nonlinearity}"  # torch.nn.RNNCell's form
        shown = ("bias", "nonlinearity")
        changed = {k: v for k, v in self.cell.config.items() if v != type(self.cell).options[k] and k not in shown}
        changed.update(self.regularisation.changed())
        return s + "".join(f", {k}={v!r}" for k, v in changed.items())

    def forward(self, input, hx=None):
        """``input`` ``(B, I)`` or ``(I,)``; returns ``h'`` or ``(h', c')`` shaped like ``hx``."""
        name = type(self).__name__
        check_input(name, input, (1, 2), self.input_size, self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        if hx is None:
            state = tuple(x.new_zeros((x.shape[0], size)) for size in self.state_sizes)
        else:
            state = cell_state(name, hx, self.state_names, self.state_sizes, x, batched)
        params = {s.name: getattr(self, s.name) for s in self._spec}
        gx, _ = self.cell.input_proj(ops, params, x)
        prev = state
        state = keep_dtypes(self.cell.step(ops, params, gx, state)[0], prev)  # autocast: see keep_dtypes
        if self.regularisation.active(self.training):
            state = zoneout_step(self.regularisation, self.training, self.generator, prev, state)
        if not batched:
            state = tuple(s.squeeze(0) for s in state)
        return state if len(state) > 1 else state[0]


@documented
class LSTMCell(CellBase):
    r"""One long short-term memory (LSTM) step: a drop-in for ``torch.nn.LSTMCell``, plus the
    LSTM family's options (``proj_size``, ``forget_bias``, ``layer_norm``, ...)::

        i = sigma(W_ii x + b_ii + W_hi h + b_hi)
        f = sigma(W_if x + b_if + W_hf h + b_hf + forget_bias)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = sigma(W_io x + b_io + W_ho h + b_ho)
        c' = f * c + i * g
        h' = o * tanh(c')                      # then h' = W_hr h' with proj_size > 0

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        proj_size: If ``> 0``, ``h'`` is projected to this size by ``weight_hr`` ``(proj_size, hidden_size)``. Default: 0
        $CELL_KEYWORDS
        $LSTM_OPTIONS
        $DROP_GATES

    $CELL_INPUTS_HC

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.LSTMCell(10, 20)
        >>> input = torch.randn(2, 3, 10)  # (time_steps, batch, input_size)
        >>> hx, cx = torch.randn(3, 20), torch.randn(3, 20)
        >>> output = []
        >>> for i in range(input.size(0)):
        ...     hx, cx = rnn(input[i], (hx, cx))
        ...     output.append(hx)
        >>> torch.stack(output, dim=0).shape
        torch.Size([2, 3, 20])
    """

    cell_name = "lstm"


@documented
class GRUCell(CellBase):
    r"""One gated recurrent unit (GRU) step: a drop-in for ``torch.nn.GRUCell``::

        r = sigma(W_ir x + b_ir + W_hr h + b_hr)
        z = sigma(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        $CELL_KEYWORDS
        $LAYER_NORM

    $CELL_INPUTS_H

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.GRUCell(10, 20)
        >>> hx = rnn(torch.randn(3, 10), torch.randn(3, 20))
        >>> hx.shape
        torch.Size([3, 20])
    """

    cell_name = "gru"


@documented
class RNNCell(CellBase):
    r"""One Elman RNN step with ``tanh`` or ``ReLU``: a drop-in for ``torch.nn.RNNCell``
    (``nonlinearity`` the fourth argument)::

        h' = act(W_ih x + b_ih + W_hh h + b_hh)     # act: tanh or relu

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``
        nonlinearity: The non-linearity to use, ``"tanh"`` or ``"relu"``. Default: ``"tanh"``

    Keyword Args:
        $CELL_KEYWORDS
        $LAYER_NORM

    $CELL_INPUTS_H

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.RNNCell(10, 20, nonlinearity="relu")
        >>> hx = rnn(torch.randn(3, 10))
        >>> hx.shape, rnn.nonlinearity
        (torch.Size([3, 20]), 'relu')
    """

    cell_name = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", *,
                 device=None, dtype=None, generator=None, **options):
        if nonlinearity not in NONLINEARITIES:  # torch.nn.RNNCell finds out at the first call
            raise ValueError(f"Unknown nonlinearity: {nonlinearity} (expected one of {NONLINEARITIES})")
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype, generator=generator,
                         nonlinearity=nonlinearity, **options)
        self.nonlinearity = nonlinearity


@documented
class PeepholeLSTMCell(CellBase):
    r"""One step of the LSTM with diagonal peepholes (``gatedrnn.PeepholeLSTM``'s cell): the input
    and forget gates look at ``c``, the output gate at ``c'``, through ``weight_peephole``
    ``(3*hidden_size,)``; the other parameters are ``torch.nn.LSTMCell``'s.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        proj_size: If ``> 0``, ``h'`` is projected to this size by ``weight_hr``. Default: 0
        $CELL_KEYWORDS
        $LSTM_OPTIONS
        $DROP_GATES

    $CELL_INPUTS_HC

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.PeepholeLSTMCell(10, 20)
        >>> h, c = rnn(torch.randn(3, 10))
        >>> h.shape, c.shape
        (torch.Size([3, 20]), torch.Size([3, 20]))
    """

    cell_name = "peephole"


@documented
class CIFGLSTMCell(CellBase):
    r"""One step of the coupled input-forget gate LSTM (``gatedrnn.CIFGLSTM``'s cell):
    ``i = 1 - f``, three gate blocks ``f, g, o``.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        proj_size: If ``> 0``, ``h'`` is projected to this size by ``weight_hr``. Default: 0
        $CELL_KEYWORDS
        $LSTM_OPTIONS

    $CELL_INPUTS_HC

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.CIFGLSTMCell(10, 20)
        >>> h, c = rnn(torch.randn(10))  # unbatched
        >>> h.shape, rnn.weight_ih.shape
        (torch.Size([20]), torch.Size([60, 10]))
    """

    cell_name = "cifg"


@documented
class MogrifierLSTMCell(CellBase):
    r"""One step of the Mogrifier LSTM (``gatedrnn.MogrifierLSTM``'s cell): ``rounds`` rounds of
    mutual gating of ``x`` and ``h`` (``weight_q``, ``weight_r``), then the LSTM step.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        rounds: The number of mogrifier rounds. Default: 5
        rank: If set, each ``Q_k``/``R_k`` is a product of two factors of this inner size. Default: ``None``
        proj_size: If ``> 0``, ``h'`` is projected to this size by ``weight_hr``. Default: 0
        $CELL_KEYWORDS
        $LSTM_OPTIONS

    $CELL_INPUTS_HC

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.MogrifierLSTMCell(10, 20, rounds=3)
        >>> h, c = rnn(torch.randn(3, 10))
        >>> h.shape, rnn.weight_q.shape, rnn.weight_r.shape
        (torch.Size([3, 20]), torch.Size([2, 10, 20]), torch.Size([1, 20, 10]))
    """

    cell_name = "mogrifier"


@documented
class SLSTMCell(CellBase):
    r"""One sLSTM step (``gatedrnn.SLSTM``'s cell, xLSTM): state ``(h, c, n, m)``, an exponential
    input gate stabilised by ``m``, a recurrent product block-diagonal over ``num_heads`` heads.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        num_heads: The number of heads; divides ``hidden_size``. Default: 1
        $CELL_KEYWORDS
        The sLSTM takes no zoneout.

    Inputs: input, (h_0, c_0, n_0, m_0)
        * **input**: ``(N, input_size)`` or unbatched ``(input_size,)``.
        * **h_0**, **c_0**, **n_0**, **m_0**: each ``(N, hidden_size)`` or ``(hidden_size,)``.
          Zeros if not given.

    Outputs: (h_1, c_1, n_1, m_1)
        * the next state, shaped as the given one.

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.SLSTMCell(10, 20, num_heads=2)
        >>> h, c, n, m = rnn(torch.randn(3, 10))
        >>> h.shape, m.shape
        (torch.Size([3, 20]), torch.Size([3, 20]))
    """

    cell_name = "slstm"


@documented
class MinGRUCell(CellBase):
    r"""One minGRU step (``gatedrnn.MinGRU``'s cell): ``h' = (1 - z) * h + z * g(W_ih x + b_ih)``
    with ``z`` read from the input alone; no recurrent weight.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the bias ``b_ih``. Default: ``True``

    Keyword Args:
        $CELL_KEYWORDS

    $CELL_INPUTS_H

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.MinGRUCell(10, 20)
        >>> rnn(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    cell_name = "mingru"


@documented
class MinLSTMCell(CellBase):
    r"""One minLSTM step (``gatedrnn.MinLSTM``'s cell): ``h' = f/(f+i) * h + i/(f+i) * g(...)``
    with both gates read from the input alone; no recurrent weight.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the bias ``b_ih``. Default: ``True``

    Keyword Args:
        $CELL_KEYWORDS

    $CELL_INPUTS_H

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.MinLSTMCell(10, 20)
        >>> rnn(torch.randn(10)).shape
        torch.Size([20])
    """

    cell_name = "minlstm"


@documented
class IndRNNCell(CellBase):
    r"""One IndRNN step (``gatedrnn.IndRNN``'s cell): ``h' = act(W_ih x + b_ih + w_hh * h + b_hh)``
    with one recurrent weight per unit.

    Args:
        input_size: The number of expected features in the input ``x``.
        hidden_size: The number of features in the hidden state ``h``.
        bias: If ``False``, the cell does not use the biases ``b_ih`` and ``b_hh``. Default: ``True``

    Keyword Args:
        nonlinearity: ``"relu"`` (default) or ``"tanh"``.
        $CELL_KEYWORDS

    $CELL_INPUTS_H

    $CELL_ATTRIBUTES

    Example::

        >>> rnn = gatedrnn.IndRNNCell(10, 20)
        >>> rnn(torch.randn(3, 10)).shape, rnn.weight_hh.shape
        (torch.Size([3, 20]), torch.Size([20]))
    """

    cell_name = "indrnn"


CELL_MODULES = {m.cell_name: m for m in (RNNCell, LSTMCell, GRUCell, PeepholeLSTMCell, CIFGLSTMCell, MogrifierLSTMCell,
                                         SLSTMCell, MinGRUCell, MinLSTMCell, IndRNNCell)}
assert set(CELL_MODULES) == set(CELLS)
