"""The modern cells as sequence modules: ``SLSTM`` (xLSTM), ``MinGRU``, ``MinLSTM``, ``IndRNN``.

``torch.nn`` has none of them; they take ``torch.nn.RNN``'s constructor all the same (without
``nonlinearity`` and ``proj_size``), and the math is the cells' (``gatedrnn.cells``).
"""
from __future__ import annotations

from .base import RecurrentBase
from .docs import documented


@documented
class SLSTM(RecurrentBase):
    r"""The sLSTM of xLSTM (Beck et al. 2024) over a sequence: an exponential input gate, a
    normaliser ``n`` and a stabiliser ``m`` in the state ``(h, c, n, m)``; the recurrent product
    is block-diagonal over ``num_heads`` heads. Gate blocks ``i, f, z, o``::

        a   = W_ih x_t + b_ih + blockdiag(W_hh) h_{t-1} + b_hh
        m_t = max(a_i, log sigma(a_f) + m_{t-1})        (a_i where n_{t-1} == 0)
        c_t = exp(log sigma(a_f) + m_{t-1} - m_t) * c_{t-1} + exp(a_i - m_t) * tanh(a_z)
        n_t = exp(log sigma(a_f) + m_{t-1} - m_t) * n_{t-1} + exp(a_i - m_t)
        h_t = sigma(a_o) * c_t / n_t

    Args:
        $SIZES
        $FLAGS

    Keyword Args:
        $ENGINE_FUSED
        num_heads: The number of heads of the block-diagonal recurrent product; divides
            ``hidden_size``. Default: 1 (one head: the LSTM's layout of ``weight_hh``)
        $FACTORY
        $REGULARISATION
        The sLSTM takes no zoneout (its state's parts are not independent units).

    Inputs: input, (h_0, c_0, n_0, m_0)
        * **input**: ``(L, H_in)`` unbatched, ``(L, N, H_in)``, or ``(N, L, H_in)`` with
          ``batch_first=True``; or a ``torch.nn.utils.rnn.PackedSequence``.
        * **h_0**, **c_0**, **n_0**, **m_0**: each ``(D * num_layers, hidden_size)`` unbatched or
          ``(D * num_layers, N, hidden_size)``. Zeros if not given (``n = 0`` marks a fresh state).

    Outputs: output, (h_n, c_n, n_n, m_n)
        * **output**: ``(L, D * hidden_size)``, ``(L, N, D * hidden_size)`` or ``(N, L, D *
          hidden_size)``: ``h_t`` of the last layer at every step.
        * **h_n**, **c_n**, **n_n**, **m_n**: the final state, shaped as the initial one.

    $ATTRIBUTES
        ``weight_ih_l[k]`` ``(4*hidden_size, input size)``, ``weight_hh_l[k]`` ``(4*hidden_size,
        hidden_size/num_heads)``.

    Example::

        >>> rnn = gatedrnn.SLSTM(10, 20, num_heads=4)
        >>> output, (h, c, n, m) = rnn(torch.randn(5, 3, 10))
        >>> output.shape, n.shape, rnn.weight_hh_l0.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]), torch.Size([80, 5]))
    """

    cell_name = "slstm"
    mode = "SLSTM"


@documented
class MinGRU(RecurrentBase):
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?") over a sequence: gates that read
    only the input, no recurrent weight. Blocks ``z, h`` of ``weight_ih``::

        z   = sigma(W_iz x_t + b_iz)
        h~  = g(W_ih x_t + b_ih),   g(v) = v + 0.5 (v >= 0), sigma(v) (v < 0)
        h_t = (1 - z) * h_{t-1} + z * h~

    Args:
        $SIZES
        $FLAGS

    Keyword Args:
        $ENGINE_FUSED
        $FACTORY
        $REGULARISATION
        ``dropout_state`` and ``weight_drop`` are refused: there is no recurrent product.

    $INPUTS_H

    $ATTRIBUTES
        ``weight_ih_l[k]`` ``(2*hidden_size, input size)`` and ``bias_ih_l[k]``; no ``weight_hh``.

    Example::

        >>> rnn = gatedrnn.MinGRU(10, 20, 2)
        >>> output, hn = rnn(torch.randn(5, 3, 10))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    cell_name = "mingru"
    mode = "MIN_GRU"


@documented
class MinLSTM(RecurrentBase):
    r"""minLSTM (Feng et al. 2024) over a sequence: normalised forget and input gates that read
    only the input, no recurrent weight. Blocks ``f, i, h`` of ``weight_ih``::

        f, i = sigma(W_if x_t + b_if), sigma(W_ii x_t + b_ii)
        h~   = g(W_ih x_t + b_ih)                      # g as in MinGRU
        h_t  = f / (f + i) * h_{t-1} + i / (f + i) * h~

    Args:
        $SIZES
        $FLAGS

    Keyword Args:
        $ENGINE_FUSED
        $FACTORY
        $REGULARISATION
        ``dropout_state`` and ``weight_drop`` are refused: there is no recurrent product.

    $INPUTS_H

    $ATTRIBUTES
        ``weight_ih_l[k]`` ``(3*hidden_size, input size)`` and ``bias_ih_l[k]``; no ``weight_hh``.

    Example::

        >>> rnn = gatedrnn.MinLSTM(10, 20)
        >>> output, hn = rnn(torch.randn(5, 3, 10))
        >>> output.shape, rnn.weight_ih_l0.shape
        (torch.Size([5, 3, 20]), torch.Size([60, 10]))
    """

    cell_name = "minlstm"
    mode = "MIN_LSTM"


@documented
class IndRNN(RecurrentBase):
    r"""IndRNN (Li et al. 2018) over a sequence: one recurrent weight per unit, the units of a
    layer independent of each other::

        h_t = act(W_ih x_t + b_ih + w_hh * h_{t-1} + b_hh)     # act: relu (default) or tanh

    Args:
        $SIZES
        $FLAGS

    Keyword Args:
        $ENGINE_FUSED
        nonlinearity: ``"relu"`` (default) or ``"tanh"``.
        $FACTORY
        $REGULARISATION

    $INPUTS_H

    $ATTRIBUTES
        ``weight_hh_l[k]`` is ``(hidden_size,)``, initialised in ``[-1, 1]``.

    Example::

        >>> rnn = gatedrnn.IndRNN(10, 20, 2, nonlinearity="tanh")
        >>> output, hn = rnn(torch.randn(5, 3, 10))
        >>> output.shape, rnn.weight_hh_l0.shape
        (torch.Size([5, 3, 20]), torch.Size([20]))
    """

    cell_name = "indrnn"
    mode = "INDRNN"
