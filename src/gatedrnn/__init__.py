"""gatedrnn: the LSTM family of recurrent networks, exact, readable and fast.

    import torch, gatedrnn

    lstm = gatedrnn.LSTM(32, 64, num_layers=2)            # a drop-in for torch.nn.LSTM
    out, (h, c) = lstm(torch.randn(20, 4, 32))             # (T, B, I) -> (T, B, H)
    mog = gatedrnn.layer("mogrifier", 32, 64, rounds=4)   # any cell of CELLS by name
    run = gatedrnn.load("runs/RUN")                       # a run trained by `gatedrnn train`
    print(run.sample("def ", length=200, seed=1))

The modules (``RNN``, ``LSTM``, ``GRU``, ``PeepholeLSTM``, ``CIFGLSTM``, ``MogrifierLSTM``, ...)
and single-step cells (``LSTMCell``, ...) take ``torch.nn``'s arguments and state dicts;
``gatedrnn.reference`` is the NumPy engine with the hand-derived backward pass;
``gatedrnn.training`` trains, evaluates and samples language models (``Trainer``,
``TrainConfig``); ``gatedrnn.load`` opens a trained run. The command line is ``gatedrnn --help``.
"""
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
