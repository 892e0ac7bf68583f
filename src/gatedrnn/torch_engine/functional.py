"""One layer, one direction, over a whole sequence, in two engines that must agree.

    y, state_n = run_layer(cell, params, x, state, keep=None, engine="fused")

``params`` maps the single-layer names (``weight_ih``, ...) to tensors, plus optionally the
non-parameter ``mask_hh`` ``(B, R)`` (state dropout: a constant mask on the ``h`` that feeds the
recurrent product); ``x`` is ``(T, B, I)``; ``state`` is the tuple ``(h0,)`` or ``(h0, c0)``.
``keep`` is ``None`` or a tuple of masks, one per state element, broadcastable to
``(T, B, size)``: after step ``t`` the state is ``keep * s_{t-1} + (1 - keep) * s_t``. Zoneout
and variable-length (packed) batches are both written as such masks. The NumPy reference takes
the same masks under the same names (``reference.forward(..., keep=..., mask_hh=...)``).

- ``engine="autograd"``: the cell's ``step`` in the one sequence loop, differentiated by
  autograd (``autograd_loop.py``; the slow twin).
- ``engine="fused"``: ``function.LoopFunction`` around a specialised loop where the capability
  table has one for the configuration (``capability.py``, ``loops/``), else around the generic
  loop (``generic.py``): a forward without a graph that saves what its hand-derived BPTT
  backward needs. When a graph of the backward is requested (``create_graph=True``), the
  backward recomputes through the autograd twin instead, so second derivatives are exact and
  the first-order path keeps its speed. Under a ``torch.func`` transform (``vmap``, ``grad``,
  ``jacrev``, ``jacfwd``, ...) it runs the autograd loop, which the transforms see through.
- ``engine="triton"``: the GPU engine (``triton/``, docs/gpu.md): the same hand-derived BPTT with
  each step's elementwise work in one Triton kernel and the loop captured as a CUDA graph; on CPU
  only under ``TRITON_INTERPRET=1`` (for tests). What it does not compute (its declaration in the
  capability table) it refuses with a ``ValueError`` of one line.

Under ``torch.autocast`` both run the matrix products in the autocast dtype while the state keeps
the initial state's dtype (float32 ``c``); the fused backward runs its products under the
forward's autocast and sums the weight gradients of the steps in float32.
"""
from __future__ import annotations

import warnings

import torch

from ..cells import Cell
from ..reference import sequence
from . import capability, triton
from .autograd_loop import autograd_layer
from .function import run_loop
from .generic import GENERIC
from .ops import TORCH_OPS as ops
from .ops import keep_dtypes, transforms_active

ENGINES = ("fused", "autograd", "triton")
DEPRECATED_REFERENCE = ('engine="reference" is deprecated: the torch autograd loop is engine="autograd" '
                        '(the NumPy engine is gatedrnn.reference)')


def mix_state(keep_t, prev, new):
    """``keep * prev + (1 - keep) * new`` per state element (the sequence loop's, on tensors)."""
    return sequence.mix_state(ops, keep_t, prev, new)


def reference_layer(cell: Cell, params: dict, x, state, keep=None):
    """The autograd loop under its name before 0.2: ``autograd_layer``, with a DeprecationWarning."""
    warnings.warn("reference_layer is deprecated: call it autograd_layer", DeprecationWarning, stacklevel=2)
    return autograd_layer(cell, params, x, state, keep)


def run_layer(cell: Cell, params: dict, x, state, keep=None, engine: str = "fused"):
    """``(y (T, B, R), state_n)`` for one layer and direction; see the module docstring."""
    if engine == "reference":
        warnings.warn(DEPRECATED_REFERENCE, DeprecationWarning, stacklevel=2)
        engine = "autograd"
    if engine == "autograd" or (engine in ("fused", "triton") and transforms_active(x)):
        # torch.func's transforms see through the autograd loop's ops, not through the fused
        # engines' autograd.Functions (their in-place loops have no batching or forward-mode rules)
        return autograd_layer(cell, params, x, tuple(state), keep)
    if engine not in ("fused", "triton"):
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if keep is not None and torch.is_grad_enabled() and any(k is not None and k.requires_grad for k in keep):
        raise ValueError("keep masks are constants to the fused engine, but one requires grad; "
                         "detach it, or use engine='autograd' to differentiate through it")
    mask = params.get("mask_hh")
    if mask is not None and torch.is_grad_enabled() and mask.requires_grad:
        raise ValueError("mask_hh (state dropout) is a constant to the fused engine, but it requires grad; "
                         "detach it, or use engine='autograd' to differentiate through it")
    if engine == "triton":  # ValueError with one line where it does not compute the call
        return triton.run(cell, params, x, tuple(state), keep)
    loop = capability.loop_for(cell) if capability.supports(cell, params, x, keep, state) else GENERIC
    return run_loop(loop, cell, params, x, state, keep)


__all__ = ["run_layer", "autograd_layer", "reference_layer", "mix_state", "keep_dtypes", "ENGINES", "DEPRECATED_REFERENCE"]
