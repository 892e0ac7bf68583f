"""gatedrnn: the LSTM family of recurrent networks, exact, readable and fast."""
from .cells import CELLS, make_cell

__version__ = "0.1.0"


def __getattr__(name):
    # the torch engine is imported on first use, so the NumPy reference works without torch
    import importlib

    if name in ("load", "Run"):  # a trained run: gatedrnn.load("runs/RUN")
        return getattr(importlib.import_module(".training.run", __name__), name)
    torch_engine = importlib.import_module(".torch_engine", __name__)
    if name in torch_engine.__all__:
        return getattr(torch_engine, name)
    raise AttributeError(f"module 'gatedrnn' has no attribute {name!r}")


__all__ = ["CELLS", "make_cell", "__version__", "load", "Run", "RNN", "LSTM", "GRU", "PeepholeLSTM", "CIFGLSTM",
           "MogrifierLSTM", "layer", "RNNCell", "LSTMCell", "GRUCell", "PeepholeLSTMCell", "CIFGLSTMCell",
           "MogrifierLSTMCell", "SLSTM", "MinGRU", "MinLSTM", "IndRNN", "SLSTMCell", "MinGRUCell", "MinLSTMCell",
           "IndRNNCell"]
