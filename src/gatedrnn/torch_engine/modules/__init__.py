"""``torch.nn``-compatible sequence modules for every cell, one class each.

``gatedrnn.LSTM(...)`` takes the constructor and ``forward`` of ``torch.nn.LSTM`` and holds the
same parameters under the same names, so a ``torch.nn`` ``state_dict`` loads unchanged. The cell's
options (``forget_bias``, ``rounds``, ``layer_norm``, ...) are keyword arguments on top.

``base.RecurrentBase`` is the machinery they share; a module is a small class naming its cell and
documenting it (``lstm.py``, ``gru.py``, ``rnn.py``, mirroring ``gatedrnn.cells``; ``modern.py``
for sLSTM, minGRU, minLSTM and IndRNN).
"""
from __future__ import annotations

from ...cells import CELLS, make_cell
from ..boundary import InputError
from .base import ENGINES, RecurrentBase, init_tensor, repack, reverse_padded
from .gru import GRU
from .lstm import CIFGLSTM, LSTM, LSTMFamilyModule, MogrifierLSTM, PeepholeLSTM
from .modern import SLSTM, IndRNN, MinGRU, MinLSTM
from .rnn import RNN

MODULES = {m.cell_name: m for m in (RNN, LSTM, GRU, PeepholeLSTM, CIFGLSTM, MogrifierLSTM, SLSTM, MinGRU, MinLSTM,
                                    IndRNN)}
assert set(MODULES) == set(CELLS)


def layer(cell_name: str, input_size: int, hidden_size: int, **kwargs) -> RecurrentBase:
    """The recurrent module for a cell name: ``layer("mogrifier", 32, 64, num_layers=2, rounds=4)``.

    ``cell_name`` is one of ``gatedrnn.CELLS`` (``"lstm"``, ``"gru"``, ``"mogrifier"``, ...);
    ``input_size`` and ``hidden_size`` are as in ``torch.nn.LSTM``; ``kwargs`` are the module's
    own (``num_layers``, ``bias``, ``batch_first``, ``dropout``, ``bidirectional``, ``engine``,
    ...) and the cell's options (``proj_size``, ``rounds``, ``layer_norm``, ``zoneout``, ...).
    The same as calling the class (``gatedrnn.MogrifierLSTM(32, 64, ...)``); an unknown name
    raises ``ValueError`` naming the close matches.
    """
    make_cell(cell_name)  # unknown names fail here with the close ones suggested
    return MODULES[cell_name](input_size, hidden_size, **kwargs)


__all__ = ["RecurrentBase", "LSTMFamilyModule", "RNN", "LSTM", "GRU", "PeepholeLSTM", "CIFGLSTM",
           "MogrifierLSTM", "SLSTM", "MinGRU", "MinLSTM", "IndRNN", "MODULES", "layer", "InputError", "ENGINES", "init_tensor", "repack",
           "reverse_padded"]
