"""The PyTorch engine: fused autograd Functions, ``torch.nn``-compatible modules."""
from .functional import reference_layer, run_layer
from .modules import CIFGLSTM, GRU, LSTM, MODULES, RNN, MogrifierLSTM, PeepholeLSTM, RecurrentBase, layer

__all__ = ["run_layer", "reference_layer", "RNN", "LSTM", "GRU", "PeepholeLSTM", "CIFGLSTM",
           "MogrifierLSTM", "RecurrentBase", "MODULES", "layer"]
