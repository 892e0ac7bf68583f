"""gatedrnn: the LSTM family of recurrent networks, exact, readable and fast."""
from .cells import CELLS, make_cell

__version__ = "0.1.0"

__all__ = ["CELLS", "make_cell", "__version__"]
