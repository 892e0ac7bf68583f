"""The gated recurrent unit as a sequence module, a drop-in for ``torch.nn.GRU``."""
from __future__ import annotations

from .base import RecurrentBase
from .docs import documented


@documented
class GRU(RecurrentBase):
    r"""A multi-layer gated recurrent unit (GRU, Cho et al. 2014) network over a sequence: a
    drop-in for ``torch.nn.GRU`` (same arguments, parameters, ``state_dict``, outputs and errors),
    with gatedrnn's engines and regularisation on top.

    Each layer computes, at every step ``t``, with ``torch.nn``'s placement of the reset gate::

        r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    Args:
        $SIZES
        $FLAGS

    Keyword Args:
        $ENGINE_NATIVE
        $FACTORY
        $LAYER_NORM
        $REGULARISATION

    $INPUTS_H

    $ATTRIBUTES
        Gate blocks in the order ``r, z, n``: ``weight_ih_l0`` is ``(3*hidden_size, input_size)``.

    $NOTES

    Example::

        >>> rnn = gatedrnn.GRU(10, 20, 2)
        >>> input = torch.randn(5, 3, 10)
        >>> h0 = torch.randn(2, 3, 20)
        >>> output, hn = rnn(input, h0)
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    cell_name = "gru"
    mode = "GRU"
