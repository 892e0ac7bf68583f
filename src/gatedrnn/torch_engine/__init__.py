"""The PyTorch engine: fused autograd Functions, ``torch.nn``-compatible modules, single-step
cells and weight converters."""
import warnings as _warnings

import torch as _torch

from . import convert
from .cell_modules import (
    CELL_MODULES,
    CIFGLSTMCell,
    GRUCell,
    IndRNNCell,
    LSTMCell,
    MinGRUCell,
    MinLSTMCell,
    MogrifierLSTMCell,
    PeepholeLSTMCell,
    RNNCell,
    SLSTMCell,
)
from .functional import autograd_layer, reference_layer, run_layer
from .boundary import InputError
from .cell_modules import CellBase
from .modules import (
    CIFGLSTM,
    GRU,
    LSTM,
    MODULES,
    RNN,
    SLSTM,
    IndRNN,
    MinGRU,
    MinLSTM,
    MogrifierLSTM,
    PeepholeLSTM,
    RecurrentBase,
    layer,
)
from .native import native_kernel

__all__ = ["run_layer", "autograd_layer", "reference_layer", "RNN", "LSTM", "GRU", "PeepholeLSTM", "CIFGLSTM",
           "MogrifierLSTM", "RecurrentBase", "MODULES", "layer", "RNNCell", "LSTMCell", "GRUCell",
           "PeepholeLSTMCell", "CIFGLSTMCell", "MogrifierLSTMCell", "CELL_MODULES", "CellBase", "InputError",
           "native_kernel", "convert", "SLSTM", "MinGRU", "MinLSTM", "IndRNN", "SLSTMCell", "MinGRUCell",
           "MinLSTMCell", "IndRNNCell"]

# The modules' checks at the boundary compare sizes, which a trace (torch.onnx.export,
# torch.jit.trace) records as constants, the right thing for a module's fixed sizes; torch
# silences the same TracerWarning for its own modules (torch/jit/_trace.py), and so does this.
_warnings.filterwarnings("ignore", category=_torch.jit.TracerWarning, module=r"gatedrnn\.")
