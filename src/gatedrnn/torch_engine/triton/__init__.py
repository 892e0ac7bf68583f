"""The GPU engine: each step's elementwise work in one Triton kernel, the products on cuBLAS,
the sequence loop captured as a CUDA graph per shape (docs/gpu.md).

    reason = refusal(cell, params, x, keep, state)   # None: this engine computes the call
    y, state_n = run(cell, params, x, state, keep)

``HANDLES`` declares what it computes: per cell, per option, the values handled (``every``: any
valid value; ``values``: the ones the tests run). Anything else is refused in one line (for
``engine="triton"``) or left to the fused engine (for ``"auto"``). On CPU it runs only under
``TRITON_INTERPRET=1``, Triton's interpreter, for tests. Importing gatedrnn never imports
triton: the kernels load on the first call.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Handled:
    values: tuple  # values the tests run (the default first)
    every: bool = False  # True: every valid value is computed, not only ``values``


BOOL = Handled((True, False), every=True)
LAYER_NORM = Handled((False, True), every=True)
ACT = Handled(("tanh", "identity"), every=True)
_LSTM = {
    "bias": BOOL,
    "forget_bias": Handled((0.0, 1.5), every=True),
    "forget_bias_init": Handled((None, 1.0), every=True),  # an initialisation: nothing to compute
    "proj_size": Handled((0,)),
    "layer_norm": LAYER_NORM,
    "drop_gates": Handled(((), ("i",), ("f",), ("o",), ("i", "o"), ("i", "f", "o")), every=True),
    "input_activation": ACT,
    "output_activation": ACT,
}
_CIFG = {k: v for k, v in _LSTM.items() if k != "drop_gates"}
#: cell name -> option -> what is handled; a cell or option not listed is refused
HANDLES = {
    "lstm": _LSTM,
    "peephole": _LSTM,
    "cifg": _CIFG,
    "mogrifier": {**_CIFG, "layer_norm": Handled((False,)), "rounds": Handled((5, 0, 1, 2), every=True),
                  "rank": Handled((None, 2), every=True)},
    "gru": {"bias": BOOL, "layer_norm": LAYER_NORM},
    "rnn": {"bias": BOOL, "layer_norm": LAYER_NORM, "nonlinearity": Handled(("tanh", "relu"), every=True)},
}
#: the same in the capability table's format (torch_engine/capability.py: ``...`` for any value)
DECLARED = {name: {key: (... if h.every else h.values) for key, h in options.items()} for name, options in HANDLES.items()}
#: beyond the cell: zoneout and padded batches (keep masks on every state element), state dropout
#: (``mask_hh``), float32 and float64, float16/bfloat16 products under ``torch.autocast``
DTYPES = (torch.float32, torch.float64)


def cell_refusal(cell) -> str | None:
    """Why this engine does not compute ``cell`` (one line), or ``None``."""
    options = HANDLES.get(cell.name)
    if options is None:
        return f"engine='triton' does not compute the {cell.name!r} cell; it computes {', '.join(HANDLES)}"
    for key, value in cell.config.items():
        h = options.get(key)
        if h is None or not (h.every or value in h.values):
            allowed = "" if h is None else f" (it computes {key} in {list(h.values)})"
            return f"engine='triton' does not compute {cell.name} with {key}={value!r}{allowed}; use engine='fused'"
    return None


def environment_refusal(x) -> str | None:
    """Why this engine cannot run on ``x``'s device here, or ``None``."""
    if importlib.util.find_spec("triton") is None:
        return "engine='triton' needs the triton package (pip install triton), which is not installed"
    if x.device.type == "cuda":
        return None
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    common = __import__("sys").modules.get(__name__ + ".common")
    if x.device.type != "cpu" or not interpreted or (common is not None and not common.INTERPRETED):
        return (f"engine='triton' runs on CUDA tensors (on CPU only under TRITON_INTERPRET=1, for tests); "
                f"got a {x.device.type} tensor")
    return None


#: ``engine="auto"`` takes this engine on a CUDA device only when asked (``GATEDRNN_TRITON=1``, or
#: ``AUTO = True``): until it has been measured on a GPU, auto stays on the fused engine there, whose
#: torch ops have run on CUDA; ``engine="triton"`` runs it whenever it is asked for by name
AUTO = os.environ.get("GATEDRNN_TRITON", "0") == "1"


def usable(cell, x) -> bool:
    """Whether ``engine="auto"`` should take this engine for ``cell`` on ``x``: a CUDA tensor of a
    dtype it computes, triton installed, the configuration declared (never on CPU: there the
    interpreter is for tests only)."""
    return (AUTO and x.device.type == "cuda" and x.dtype in DTYPES and cell_refusal(cell) is None
            and environment_refusal(x) is None)


def refusal(cell, params: dict, x, keep=None, state=()) -> str | None:
    """Why this engine does not compute this call (one line), or ``None``."""
    reason = cell_refusal(cell) or environment_refusal(x)
    if reason:
        return reason
    if x.dtype not in DTYPES:
        return (f"engine='triton' computes float32 and float64 (float16 and bfloat16 through torch.autocast); "
                f"got {x.dtype}")
    if "mask_ih" in params:
        return "engine='triton' does not compute mask_ih"
    for t in [*(v for k, v in params.items() if not k.startswith("mask_")), *state]:
        if t.device != x.device or t.dtype != x.dtype:
            return f"engine='triton' needs every tensor on {x.device} in {x.dtype}; got one on {t.device} in {t.dtype}"
    for k in [params.get("mask_hh"), *(keep or ())]:  # masks: any float dtype, on x's device
        if k is not None and k.device != x.device:
            return f"engine='triton' needs every mask on {x.device}; got one on {k.device}"
    mask = params.get("mask_hh")
    if mask is not None and tuple(mask.shape) != (x.shape[1], params["weight_hh"].shape[1]):
        return f"mask_hh should have shape {(x.shape[1], params['weight_hh'].shape[1])}, got {tuple(mask.shape)}"
    return None


def run(cell, params: dict, x, state, keep=None):
    """``(y (T, B, R), state_n)`` through the Triton loop; raises ``ValueError`` with ``refusal``'s
    line where it does not compute the call."""
    reason = refusal(cell, params, x, keep, state)
    if reason:
        raise ValueError(reason)
    from .function import run as run_triton  # imports triton and compiles (or interprets) the kernels

    return run_triton(cell, params, x, state, keep)
