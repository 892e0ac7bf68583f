"""What every Triton kernel here shares: activations written once, the launch grid, the flag
that says whether the kernels were built for the interpreter.

Every kernel works on flat ``(B, H)`` element indices ``idx`` (``row = idx // H``, ``col = idx %
H``), one program per ``BLOCK`` of them: a gate block ``k`` of a ``(B, G*H)`` tensor is at
``row * G*H + k*H + col``. Arithmetic runs in the state's dtype (float32, or float64 under the
interpreter); loads of the products' outputs (half precision under autocast) are cast up, stores
cast to the buffer's dtype.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

try:
    from triton import knobs

    #: the kernels were decorated under ``TRITON_INTERPRET=1`` and so run on CPU tensors
    INTERPRETED = bool(knobs.runtime.interpret)
except ImportError:  # a triton before its knobs module reads the variable itself
    INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
#: elements per program; small on the interpreter, which runs programs one after another
MAX_BLOCK = 1024


def grid_for(n: int):
    """``(grid, BLOCK)`` for ``n`` flat elements."""
    block = min(MAX_BLOCK, triton.next_power_of_2(max(n, 1)))
    return (triton.cdiv(n, block),), block


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))  # in (0, 1]: no overflow for any x
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def mix(new, prev, keep):
    """Zoneout or a padded step: ``keep * prev + (1 - keep) * new``, as ``torch.lerp(new, prev, keep)``."""
    return new + keep * (prev - new)


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def row_sum(x):
    """The sum of a program's block, written with ``tl.reduce`` on a combine function of this
    module: ``tl.sum`` is decorated when triton is imported, so under an interpreter switched on
    afterwards (the tests) it would be a compiled function the interpreter cannot call."""
    return tl.reduce(x, 0, _add)
