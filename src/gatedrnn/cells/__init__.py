"""The math of each cell: parameter spec, forward step, hand-derived backward step.

``CELLS`` maps a name to its cell class; ``make_cell(name, **options)`` builds a configured cell.
The classes are named ``<Cell>Math`` (``LSTMMath``, ``GRUMath``, ...): the modules a user builds
(``gatedrnn.LSTM``, ``gatedrnn.GRU``, ...) hold one of these and keep the plain names.
"""
from __future__ import annotations

import difflib

from .base import NUMPY_OPS, Cell, ParamSpec, init_array
from .gru import GRUMath
from .indrnn import IndRNNMath
from .lstm import CIFGMath, LSTMMath, LSTMFamily, PeepholeLSTMMath
from .mingru import MinGRUMath
from .minlstm import MinLSTMMath
from .mogrifier import MogrifierMath
from .rnn import RNNMath
from .slstm import SLSTMMath

CELLS: dict[str, type[Cell]] = {
    c.name: c for c in (RNNMath, LSTMMath, PeepholeLSTMMath, CIFGMath, GRUMath, MogrifierMath, SLSTMMath, MinGRUMath,
                         MinLSTMMath, IndRNNMath)
}


def make_cell(cell, **options) -> Cell:
    """A configured cell: the math of one recurrent step, for every engine to run.

    ``cell`` is a name from ``CELLS`` (``"rnn"``, ``"lstm"``, ``"peephole"``, ``"cifg"``,
    ``"gru"``, ``"mogrifier"``, ...) or a ``Cell``, returned as is when no ``options`` are given
    (with options, a copy reconfigured with them). ``options`` are the cell's own (each cell's
    ``options`` lists them, with their defaults): ``make_cell("lstm", forget_bias=1.0,
    proj_size=16)``, ``make_cell("mogrifier", rounds=4, rank=8)``. An unknown name or option
    raises ``ValueError`` naming the close matches and the options the cell takes.
    """
    if isinstance(cell, Cell):
        if options:
            return type(cell)(**{**cell.config, **options})
        return cell
    if cell not in CELLS:
        close = [c for c in CELLS if c == str(cell).lower()] or difflib.get_close_matches(
            str(cell), list(CELLS), n=3, cutoff=0.5)  # a different case first: 'LSTM' -> 'lstm'
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown cell {cell!r}: expected one of {', '.join(CELLS)}{hint}")
    return CELLS[cell](**options)


__all__ = ["CELLS", "Cell", "ParamSpec", "NUMPY_OPS", "make_cell", "init_array", "LSTMFamily"]
