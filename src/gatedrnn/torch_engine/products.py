"""The matrix products of the fused loops, and which kernel runs them.

Per-step products (``B`` rows) of weights of ``ONEDNN_MIN_WEIGHT`` elements or more go through
oneDNN with the weight reordered once per call (``torch.ops.mkldnn._reorder_linear_weight`` /
``_linear_pointwise``, what ``torch.compile`` emits on CPU); smaller weights, where oneDNN's
per-call cost outweighs it, through ``torch.addmm`` (benchmarks/product_kernels.py measures both;
benchmarks/RESULTS.md has the figures). These are internal entry points: anything they refuse
(float64, bfloat16 without AVX-512, CUDA, a torch without them) falls back to ``torch.addmm``,
and ``GATEDRNN_ONEDNN=0`` (or ``ONEDNN = False``) turns them off.

Products over all steps at once (thousands of rows: the hoisted input product and the input
gradient, ``hoisted``) run on oneDNN where the processor has AVX-512 (``ONEDNN_MANY``), with the
weight reordered for the one call, and on ``torch.mm`` (MKL) elsewhere: on a Zen 4, where MKL
runs its AVX2 code, oneDNN took 0.66-0.94x MKL's time for these products from 131k weight
elements and 1.0x below; on a loaded AVX2 Zen 3 (2026-11-23) MKL measured the faster
(benchmarks/RESULTS.md, "Products of all steps on oneDNN"). The weight gradients (``weight_grad``,
a reduction over the thousands of rows) go the same way (``WEIGHT_GRAD_ON_ONEDNN`` turns that part
off): the rows' gradient transposed into oneDNN's source and the inputs reordered as its weight, as
one product; on a Zen 5, whose AVX-512 units are full width, this took 0.51-0.81x MKL's time at one
thread (benchmarks/weight_grad.py) for the larger gradients, and more than MKL's for the small
ones, which stay on MKL (``WEIGHT_GRAD_MIN``).
"""
from __future__ import annotations

import os

import torch

from . import buffers

ONEDNN = os.environ.get("GATEDRNN_ONEDNN", "1") != "0"
_AVX512 = torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX"))
#: the smallest weight (elements) whose per-step products run on oneDNN. At 32 rows on an AVX2
#: Zen 3 (benchmarks/RESULTS.md, "Which kernel runs a step's product"), oneDNN took 1.06-3.0x
#: MKL's time below 512 x 512 elements, 0.90-1.01x at it and 0.80-0.96x above it; where torch runs
#: AVX-512 code it is 512 x 256: on a Zen 4 oneDNN took 0.97-1.02x MKL's time there and 1.12x at
#: 256 x 256, on a Zen 5 0.59-0.64x there and 0.80x at 256 x 256 ("Per-step products from 512 x 256
#: elements on oneDNN").
ONEDNN_MIN_WEIGHT = 512 * 256 if _AVX512 else 512 * 512
#: whether products of all steps at once (``hoisted``) run on oneDNN: where torch runs AVX-512 code
#: (``GATEDRNN_ONEDNN_MANY=0`` or ``=1`` decides instead)
ONEDNN_MANY = os.environ.get("GATEDRNN_ONEDNN_MANY", "1" if _AVX512 else "0") != "0"
#: whether the weight gradients follow ``ONEDNN_MANY`` (off: always ``torch.mm``);
#: benchmarks/compiled_ab.py's ``mkl_wgrad`` variant turns it off
WEIGHT_GRAD_ON_ONEDNN = True
#: the smallest weight gradient (elements) that runs on oneDNN when the products of all steps do, at
#: one thread and at more (``WEIGHT_GRAD_MIN_THREADED``). On a Zen 5 (benchmarks/RESULTS.md, "Small
#: weight gradients on MKL"), oneDNN took 1.4-2.3x MKL's time for a 256 x 256 gradient (512 or 2048
#: rows, one or two threads); at one thread 0.67-0.92x from 512 x 256 on; at two, 1.14-2.23x for
#: 512 x 256 and 768 x 256, 0.91-1.35x for 1024 x 256 and 512 x 512. ``compiled_ab.py``'s
#: ``wgrad_all_onednn`` variant sets both to 0
WEIGHT_GRAD_MIN = 512 * 256
WEIGHT_GRAD_MIN_THREADED = 512 * 512


def onednn_usable(w) -> bool:
    """Whether the per-step products of weight ``w`` run on oneDNN here."""
    return (ONEDNN and w.device.type == "cpu" and w.dtype == torch.float32 and w.numel() >= ONEDNN_MIN_WEIGHT
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class Product:
    """``x @ w.T (+ add)`` for one weight ``w`` ``(N, K)`` reused over many calls.

    ``add`` is a bias ``(N,)`` or a tensor ``(M, N)``; with oneDNN the addition happens inside the
    product's kernel. The weight is reordered into oneDNN's blocked layout once, here.
    """

    def __init__(self, w, rows: int):
        self.packed = None
        if rows and onednn_usable(w):  # an empty batch: nothing for oneDNN to pack for
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), rows)
            except (RuntimeError, AttributeError):  # a build or processor without the kernel
                self.packed = None
        # with the packed copy, ``w`` itself is not held (it may be a temporary the caller built)
        self.wt = w.t() if self.packed is None else None

    def kernel_weight(self, kernels):
        """What a compiled kernel multiplies by: ``(oneDNN's packed weight, True)``, or ``(W^T,
        False)`` for ``torch.mm``; ``None`` where the weight is packed and ``kernels`` cannot call
        oneDNN from C++ (``mogrify_onednn``)."""
        if self.packed is None:
            return self.wt, False
        return (self.packed, True) if kernels.mogrify_onednn() else None

    def __call__(self, x, add=None):
        if self.packed is not None:
            if add is None or add.dim() == 1:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, add, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, self.packed, None, "add")
        if add is None:
            return torch.mm(x, self.wt)
        return torch.addmm(add, x, self.wt)


def _many_on_onednn(x, w, bias) -> bool:
    return (ONEDNN and ONEDNN_MANY and x.shape[0] > 0 and x.shape[1] > 0 and x.device.type == "cpu"
            and all(t is None or t.dtype == torch.float32 for t in (x, w, bias))
            and not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, bias)))
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def hoisted(x, w, bias=None):
    """``x @ w.T (+ bias)`` for ``x`` ``(M, K)`` of many rows (all steps at once), ``w`` ``(N, K)``
    (a transposed view is fine): on oneDNN with ``w`` reordered for this call where
    ``ONEDNN_MANY`` says so, else on ``torch.mm``."""
    if _many_on_onednn(x, w, bias):
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), x.shape[0])
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")
        except (RuntimeError, AttributeError):  # a build or processor without the kernel
            pass
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


def input_grad(d, w):
    """``d @ w``: the input's gradient over all steps, ``d`` ``(T*B, N)``, ``w`` ``(N, K)`` (``hoisted``)."""
    return hoisted(d, w.t())


def rows(a):
    """``(..., N) -> (rows, N)``: every leading axis flattened into rows."""
    return a.reshape(-1, a.shape[-1])


def weight_grad(d, inp):
    """``sum over steps and rows of d^T inp``: ``(T, B, N), (T, B, K) -> (N, K)`` (or the same
    with the rows already flattened), one product: ``hoisted``'s kernels with ``d^T`` as the
    source and ``inp^T`` as the weight, where ``WEIGHT_GRAD_ON_ONEDNN`` lets it."""
    return weight_grads(d, [inp])[0]


def _grad_on_onednn(d, inp) -> bool:
    """Whether the weight gradient ``d^T inp`` (rows flattened) runs on oneDNN."""
    least = WEIGHT_GRAD_MIN if torch.get_num_threads() == 1 else WEIGHT_GRAD_MIN_THREADED
    return WEIGHT_GRAD_ON_ONEDNN and d.shape[1] * inp.shape[1] >= least and _many_on_onednn(d.t(), inp.t(), None)


def weight_grads(d, inps):
    """``weight_grad(d, inp)`` for each of ``inps`` (the weights whose products share the gradient
    ``d``, as an LSTM's input and recurrent products do): on oneDNN ``d`` is transposed once for all."""
    d, inps = rows(d), [rows(inp) for inp in inps]
    if all(_grad_on_onednn(d, inp) for inp in inps):
        dt = buffers.scratch("weight_grads.dT", d, d.shape[1], d.shape[0]).copy_(d.t())
        return [hoisted(dt, inp.t()) for inp in inps]
    return [torch.mm(d.t(), inp) for inp in inps]


def add_weight_grad(acc, d, inp):
    """``acc += weight_grad(d, inp)`` (a chunk of steps' share of a weight gradient): on ``torch.mm``'s
    kernel as one ``addmm_``, on oneDNN's as its product and an ``add_``."""
    if _grad_on_onednn(rows(d), rows(inp)):
        return acc.add_(weight_grad(d, inp))
    return acc.addmm_(rows(d).t(), rows(inp))


def sum_rows(d):
    return rows(d).sum(0)
