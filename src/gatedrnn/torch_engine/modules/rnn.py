"""The Elman RNN as a sequence module, a drop-in for ``torch.nn.RNN``."""
from __future__ import annotations

from ...cells.rnn import NONLINEARITIES
from .base import RecurrentBase
from .docs import documented


@documented
class RNN(RecurrentBase):
    r"""A multi-layer Elman RNN with ``tanh`` or ``ReLU`` over a sequence: a drop-in for
    ``torch.nn.RNN`` (same arguments in the same order, ``nonlinearity`` the fourth, same
    parameters, ``state_dict``, outputs and errors), with gatedrnn's engines and regularisation.

    Each layer computes, at every step ``t``::

        h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)     # act: tanh or relu

    Args:
        $SIZES
        nonlinearity: The non-linearity to use, ``"tanh"`` or ``"relu"``. Default: ``"tanh"``
        $FLAGS

    Keyword Args:
        $ENGINE_NATIVE
        $FACTORY
        $LAYER_NORM
        $REGULARISATION

    $INPUTS_H

    $ATTRIBUTES
        ``weight_ih_l0`` is ``(hidden_size, input_size)``, ``weight_hh_l[k]`` ``(hidden_size, hidden_size)``.

    $NOTES

    Example::

        >>> rnn = gatedrnn.RNN(10, 20, 2, "relu")
        >>> input = torch.randn(5, 3, 10)
        >>> h0 = torch.randn(2, 3, 20)
        >>> output, hn = rnn(input, h0)
        >>> output.shape, hn.shape, rnn.nonlinearity, rnn.mode
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]), 'relu', 'RNN_RELU')
    """

    cell_name = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, engine: str = "auto", device=None, dtype=None,
                 generator=None, **options):
        check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         engine=engine, device=device, dtype=dtype, generator=generator,
                         nonlinearity=nonlinearity, **options)
        self.nonlinearity = nonlinearity
        self.mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


def check_nonlinearity(nonlinearity) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'. "
                         f"(got {nonlinearity!r}, expected one of {NONLINEARITIES})")
