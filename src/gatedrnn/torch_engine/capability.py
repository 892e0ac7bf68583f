"""Which code computes which configuration: one table, opt-in.

Every piece of code that computes only some configurations declares them as ``handles``: cell
name -> option -> the values it computes (``...``: any value). A cell is taken only when each of
its options is either declared with its value allowed or left at the cell's default, so an
option a piece of code has not declared (a new one above all) sends the cell elsewhere instead
of being silently ignored. The declarers:

- the specialised loops of the fused engine, each in its file (``loops/lstm.py``, ``gru.py``,
  ``rnn.py``, ``mogrifier.py``, ``minrnn.py``,
  ``indrnn.py``, ``slstm.py``), tried in the order of ``LOOPS``; what none takes runs the
  generic loop (``generic.py``), which runs the cell's own ``step``/``step_backward``;
- ``PER_TOKEN_STEP``: the generation step ``generation.lstm_step``; ``COMPILED_STEP``: the compiled
  step of a whole stack, ``generation.stack_step``;
- ``NATIVE_SEQUENCE`` and ``NATIVE_STEP``: PyTorch's own kernels (``native.py``), for exactly what
  ``torch.nn.LSTM``/``GRU``/``RNN`` and their cells compute;
- ``TRITON``: the GPU engine's loops (``triton/``, ``engine="triton"``; ``engine="auto"`` on a
  CUDA device for what PyTorch's kernels do not compute).

``supports`` adds what only a call shows (dtypes, devices, masks, autocast). ``GATEDRNN_FAST=0``
(or ``ENABLED = False``) sends every call to the generic loop.
"""
from __future__ import annotations

import os

from .loops.gru import GRULoop
from .loops.indrnn import IndRNNLoop
from .loops.lstm import LSTMLoop
from .loops.minrnn import MinRNNLoop
from .loops.mogrifier import MogrifierLoop
from .loops.rnn import RNNLoop
from .loops.slstm import SLSTMLoop
from .ops import autocast_of
from .triton import DECLARED as TRITON

ENABLED = os.environ.get("GATEDRNN_FAST", "1") != "0"

#: the specialised loops, in the order they are tried
LOOPS = (LSTMLoop, MogrifierLoop, GRULoop, RNNLoop, MinRNNLoop, IndRNNLoop, SLSTMLoop)

_FAMILY = {"bias": ..., "forget_bias": ..., "forget_bias_init": ...}
#: ``generation.lstm_step``: the LSTM family without layer norm, projection, dropped gates or
#: identity activations
PER_TOKEN_STEP = {"lstm": _FAMILY, "peephole": _FAMILY, "cifg": _FAMILY,
                  "mogrifier": {**_FAMILY, "rounds": ..., "rank": ...}}
#: ``generation.stack_step``: a whole stack's token in one compiled call (``csrc/step.cpp``)
COMPILED_STEP = {"rnn": {"bias": ..., "nonlinearity": ...}, "gru": {"bias": ...}, **PER_TOKEN_STEP,
                 "indrnn": {"bias": ..., "nonlinearity": ...}, "mingru": {"bias": ...}, "minlstm": {"bias": ...},
                 "slstm": {"bias": ..., "num_heads": ...}}
#: ``torch._VF.lstm``/``gru``/``rnn_*``: what torch.nn computes. ``forget_bias_init`` only
#: initialises the stored biases, so it changes nothing at compute time.
NATIVE_SEQUENCE = {"lstm": {"bias": ..., "proj_size": ..., "forget_bias_init": ...},
                   "gru": {"bias": ...}, "rnn": {"bias": ..., "nonlinearity": ...}}
#: ``torch._VF.lstm_cell``/``gru_cell``/``rnn_*_cell``: the same without projections
NATIVE_STEP = {"lstm": {"bias": ..., "forget_bias_init": ...}, "gru": {"bias": ...},
               "rnn": {"bias": ..., "nonlinearity": ...}}

#: every declaration, by the name of the code it belongs to
TABLE = {**{f"loop:{loop.name}": loop.handles for loop in LOOPS}, "per_token_step": PER_TOKEN_STEP,
         "compiled_step": COMPILED_STEP,
         "native_sequence": NATIVE_SEQUENCE, "native_step": NATIVE_STEP, "triton": TRITON}


def accepts(handles: dict, cell) -> bool:
    """Whether ``handles`` (cell name -> option -> allowed values or ``...``) covers ``cell``:
    every option declared with its value allowed, or at the cell's default."""
    declared = handles.get(cell.name)
    if declared is None:
        return False
    defaults = type(cell).options
    for key, value in cell.config.items():
        allowed = declared.get(key)
        if allowed is None:
            if value != defaults[key]:
                return False
        elif allowed is not ... and value not in allowed:
            return False
    return True


def loop_for(cell):
    """The specialised loop that declares ``cell``'s configuration, or ``None`` (the generic loop)."""
    for loop in LOOPS:
        if accepts(loop.handles, cell):
            return loop
    return None


def supports(cell, params, x, keep=None, state=()) -> bool:
    """Whether a specialised loop computes this call; ``False`` sends it to the generic loop.

    The loops write every buffer in ``x``'s dtype, so autocast (whose dtype policy the generic
    loop implements) and mixed dtypes or devices go to the generic loop too, as do an empty
    sequence, a ``mask_ih`` and masks of shapes the loops do not take.
    """
    if not (ENABLED and x.dim() == 3 and x.shape[0] > 0 and loop_for(cell) is not None):
        return False
    if "mask_ih" in params or autocast_of(x):
        return False
    masks = [k for k in (keep or ()) if k is not None]
    if masks and not getattr(loop_for(cell), "takes_keep", True):  # a loop without keep masks
        return False
    mask = params.get("mask_hh")  # (B, what weight_hh reads): its last axis (IndRNN's is (H,))
    if mask is not None and ("weight_hh" not in params or mask.shape != (x.shape[1], params["weight_hh"].shape[-1])):
        return False
    if any(k.dim() != 3 or k.shape[0] != x.shape[0] for k in masks):
        return False
    return all(t.dtype == x.dtype and t.device == x.device for t in (*params.values(), *state, *masks))
