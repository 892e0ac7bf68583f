"""The LSTM family as sequence modules: ``LSTM``, ``PeepholeLSTM``, ``CIFGLSTM``, ``MogrifierLSTM``.

The math is the cells' (``gatedrnn.cells.lstm``); these classes give it ``torch.nn.LSTM``'s
constructor (``proj_size`` the eighth argument) and document it.
"""
from __future__ import annotations

from .base import RecurrentBase
from .docs import documented


class LSTMFamilyModule(RecurrentBase):
    """``RecurrentBase`` with ``torch.nn.LSTM``'s constructor: ``proj_size`` after ``bidirectional``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, *, engine: str = "auto", device=None, dtype=None, generator=None,
                 **options):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         engine=engine, device=device, dtype=dtype, generator=generator,
                         proj_size=proj_size, **options)


@documented
class LSTM(LSTMFamilyModule):
    r"""A multi-layer long short-term memory (LSTM) network over a sequence: a drop-in for
    ``torch.nn.LSTM`` (same arguments, parameters, ``state_dict``, outputs and errors), with
    gatedrnn's engines, cell options and regularisation on top.

    Each layer computes, at every step ``t`` (``sigma`` the logistic function, ``*`` elementwise)::

        i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
        f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf + forget_bias)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)                  # then h_t = W_hr h_t with proj_size > 0

    The input of layer ``k > 0`` is the output ``h_t`` of layer ``k - 1`` (dropout aside).

    Args:
        $SIZES
        $FLAGS
        $PROJ_SIZE

    Keyword Args:
        $ENGINE_NATIVE
        $FACTORY
        $LSTM_OPTIONS
        $DROP_GATES
        $REGULARISATION

    $INPUTS_HC

    $ATTRIBUTES
        Gate blocks in the order ``i, f, g, o``: ``weight_ih_l0`` is ``(4*hidden_size, input_size)``,
        ``weight_hh_l[k]`` ``(4*hidden_size, H_out)``, ``weight_hr_l[k]`` ``(proj_size, hidden_size)``.

    $NOTES

    Example::

        >>> rnn = gatedrnn.LSTM(10, 20, 2)
        >>> input = torch.randn(5, 3, 10)
        >>> h0, c0 = torch.randn(2, 3, 20), torch.randn(2, 3, 20)
        >>> output, (hn, cn) = rnn(input, (h0, c0))
        >>> output.shape, hn.shape, cn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]), torch.Size([2, 3, 20]))
        >>> gatedrnn.LSTM(10, 20, forget_bias=1.0, layer_norm=True)  # another cell: the fused engine
        LSTM(10, 20, forget_bias=1.0, layer_norm=True)
    """

    cell_name = "lstm"
    mode = "LSTM"


@documented
class PeepholeLSTM(LSTMFamilyModule):
    r"""An LSTM with diagonal peephole connections (Gers and Schmidhuber 2000): the input and
    forget gates look at ``c_{t-1}``, the output gate at ``c_t``. ``torch.nn.LSTM``'s arguments,
    parameters and state, plus ``weight_peephole_l[k]``::

        i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi + w_i * c_{t-1})
        f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf + w_f * c_{t-1} + forget_bias)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        c_t = f_t * c_{t-1} + i_t * g_t
        o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho + w_o * c_t)
        h_t = o_t * tanh(c_t)                  # then h_t = W_hr h_t with proj_size > 0

    Args:
        $SIZES
        $FLAGS
        $PROJ_SIZE

    Keyword Args:
        $ENGINE_FUSED
        $FACTORY
        $LSTM_OPTIONS
        $DROP_GATES
        $REGULARISATION

    $INPUTS_HC

    $ATTRIBUTES
        ``weight_peephole_l[k]``: ``(3*hidden_size,)``, the diagonal weights ``w_i, w_f, w_o``
        (fewer with ``drop_gates``); the other parameters are ``torch.nn.LSTM``'s.

    $NOTES

    Example::

        >>> rnn = gatedrnn.PeepholeLSTM(10, 20, 2, batch_first=True)
        >>> output, (hn, cn) = rnn(torch.randn(3, 5, 10))
        >>> output.shape, hn.shape, rnn.weight_peephole_l0.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]), torch.Size([60]))
    """

    cell_name = "peephole"
    mode = "PEEPHOLE_LSTM"


@documented
class CIFGLSTM(LSTMFamilyModule):
    r"""An LSTM whose input gate is coupled to the forget gate, ``i_t = 1 - f_t`` (CIFG, Greff et
    al. 2017): three gate blocks ``f, g, o``, a quarter fewer weights than the LSTM::

        f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf + forget_bias)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
        o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
        c_t = f_t * c_{t-1} + (1 - f_t) * g_t
        h_t = o_t * tanh(c_t)                  # then h_t = W_hr h_t with proj_size > 0

    Args:
        $SIZES
        $FLAGS
        $PROJ_SIZE

    Keyword Args:
        $ENGINE_FUSED
        $FACTORY
        $LSTM_OPTIONS
        $REGULARISATION

    $INPUTS_HC

    $ATTRIBUTES
        Gate blocks in the order ``f, g, o``: ``weight_ih_l0`` is ``(3*hidden_size, input_size)``.

    $NOTES

    Example::

        >>> rnn = gatedrnn.CIFGLSTM(10, 20)
        >>> output, (hn, cn) = rnn(torch.randn(5, 3, 10))
        >>> output.shape, rnn.weight_ih_l0.shape
        (torch.Size([5, 3, 20]), torch.Size([60, 10]))
    """

    cell_name = "cifg"
    mode = "CIFG_LSTM"


@documented
class MogrifierLSTM(LSTMFamilyModule):
    r"""The Mogrifier LSTM (Melis et al. 2020): before each LSTM step, ``x`` and ``h`` gate each
    other for ``rounds`` rounds; for ``j = 1..rounds``::

        x = 2 sigma(h Q_k^T) * x       # odd j,  k = (j - 1) // 2
        h = 2 sigma(x R_k^T) * h       # even j, k = j // 2 - 1

    then the LSTM step (``torch.nn.LSTM``'s parameters) on the modulated ``x`` and ``h``.
    ``rounds=0`` is exactly the LSTM.

    Args:
        $SIZES
        $FLAGS
        $PROJ_SIZE

    Keyword Args:
        $ENGINE_FUSED
        rounds: The number of mogrifier rounds. Default: 5
        rank: If set, each ``Q_k`` and ``R_k`` is the product of two factors of this inner size
            (``weight_q_left/right``, ``weight_r_left/right``). Default: ``None`` (full matrices)
        $FACTORY
        $LSTM_OPTIONS
        $REGULARISATION

    $INPUTS_HC

    $ATTRIBUTES
        ``weight_q_l[k]`` ``(ceil(rounds/2), input size, H_out)`` and ``weight_r_l[k]``
        ``(floor(rounds/2), H_out, input size)``, no bias.

    $NOTES

    Example::

        >>> rnn = gatedrnn.MogrifierLSTM(10, 20, rounds=4)
        >>> output, (hn, cn) = rnn(torch.randn(5, 3, 10))
        >>> output.shape, rnn.weight_q_l0.shape, rnn.weight_r_l0.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 10, 20]), torch.Size([2, 20, 10]))
    """

    cell_name = "mogrifier"
    mode = "MOGRIFIER_LSTM"
