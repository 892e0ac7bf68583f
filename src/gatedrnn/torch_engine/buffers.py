"""The buffers a specialised loop saves for its backward, as views of one allocation backed by
transparent huge pages where the operating system offers them.

    Gs, SQ, XH = buffers.carve(x, [(T, B, 4 * H), (T, nq, B, I), (T, B, I + H)])

A training step's saved buffers are tens of megabytes (the Mogrifier's at ``H = 256``, ``T = 64``,
``B = 32``: about 40 MB), allocated afresh each step: each 4 KiB page of them costs a page fault
when first written, about 10 000 faults a step there, which the products themselves never pay
(benchmarks/RESULTS.md has the figures). On Linux with transparent huge pages in ``madvise``
mode (``/sys/kernel/mm/transparent_hugepage/enabled``), ``madvise(MADV_HUGEPAGE)`` on the
allocation makes it 2 MiB pages: one fault per 2 MiB. Elsewhere, or below ``MIN_BYTES``, or with
``GATEDRNN_HUGEPAGES=0``, the views come from an ordinary allocation: the same tensors, only
slower to touch. The memory is torch's own.

A forward's saved buffers die with the autograd graph after the backward, and the next step
asks for the same again: ``carve`` keeps its allocations (``RECYCLE``, at most ``MAX_KEPT``) and hands
one out again once no tensor uses any of its memory (torch's count of its users, and no Python
reference to its storage), so a training step's saved buffers fault once, not every step.
``GATEDRNN_RECYCLE=0`` turns that off; ``release()`` gives back what is kept and unused.

A backward's temporaries, which nothing outlives, come from ``scratch`` instead: memory this
thread keeps between calls, so they fault once, not every step.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import platform
import sys
import threading

import torch

from .ops import eager

ENABLED = os.environ.get("GATEDRNN_HUGEPAGES", "1") != "0"
#: whether ``scratch`` keeps a backward's big temporaries between calls (``GATEDRNN_SCRATCH=0``: not)
SCRATCH = os.environ.get("GATEDRNN_SCRATCH", "1") != "0"
HUGE_PAGE = 2 << 20
#: below this an allocation is left as it is (whole huge pages would be mostly unused)
MIN_BYTES = 4 * HUGE_PAGE
_MADV_HUGEPAGE = 14  # linux/mman.h
#: whether ``carve`` hands out again an allocation no tensor uses any more (``GATEDRNN_RECYCLE=0``: not)
RECYCLE = os.environ.get("GATEDRNN_RECYCLE", "1") != "0"
#: the smallest allocation ``carve`` keeps (smaller ones come from the allocator's own pools)
RECYCLE_MIN_BYTES = 1 << 20
#: the smallest temporary ``scratch`` keeps: from 1 MiB glibc hands memory back to the system as
#: it does for the largest (benchmarks/RESULTS.md, "Backward temporaries kept from 1 MiB")
SCRATCH_MIN_BYTES = 1 << 20
#: the most allocations ``carve`` keeps; past it the least recently handed out unused one goes
MAX_KEPT = 8
_state: dict = {}
_kept = threading.local()
_pool: list = []  # (flat, start, elements) of each kept allocation, least recently handed out first
_pool_lock = threading.Lock()


def _madvise():
    """libc's ``madvise``, or ``None`` off Linux or where libc cannot be loaded."""
    if "madvise" not in _state:
        fn = None
        if platform.system() == "Linux":
            try:
                fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).madvise
                fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _state["madvise"] = fn
    return _state["madvise"]


def _users(flat):
    """torch's count of the users of ``flat``'s memory and Python's of references to its storage
    object, each counting the one asked for here."""
    storage = flat.untyped_storage()
    return torch._C._storage_Use_Count(storage._cdata), sys.getrefcount(storage)


def _unused(flat) -> bool:
    """Whether no tensor but ``flat`` itself uses ``flat``'s memory and no one holds its storage
    object: its counts are those of a fresh tensor nothing else sees (measured once, here)."""
    if "lone" not in _state:
        _state["lone"] = _users(torch.empty(1))
    return _users(flat) == _state["lone"]


def _keepable(like) -> bool:
    """Whether memory made like ``like`` may be kept for a later call: an ordinary CPU tensor
    outside inference mode, tracing and ``torch.func`` transforms (a tensor made there, an
    inference tensor, a fake or a batched one, cannot serve a later eager call)."""
    return like.device.type == "cpu" and not torch.is_inference_mode_enabled() and eager(like)


def _recycling(like, nbytes) -> bool:
    return (RECYCLE and nbytes >= RECYCLE_MIN_BYTES and hasattr(torch._C, "_storage_Use_Count")
            and _keepable(like))


def _reuse(like, total):
    """A kept allocation of ``like``'s dtype that no tensor uses, holding ``total`` elements and
    at most twice as many (the smallest such), as ``(flat, start)``; ``None`` if there is none."""
    with _pool_lock:
        fits = [k for k, (flat, _, n) in enumerate(_pool)
                if flat.dtype == like.dtype and total <= n <= 2 * total and _unused(flat)]
        if not fits:
            return None
        best = _pool.pop(min(fits, key=lambda k: _pool[k][2]))
        _pool.append(best)  # the most recently handed out last
        return best[:2]


def _keep(flat, start, total):
    """Keeps a new allocation; past ``MAX_KEPT`` the least recently handed out unused ones go."""
    with _pool_lock:
        _pool.append((flat, start, total))
        unused = [k for k in range(len(_pool) - 1) if _unused(_pool[k][0])]
        for k in reversed(unused[: max(0, len(_pool) - MAX_KEPT)]):
            del _pool[k]


def _allocate(like, total):
    """``(flat, start)``: an allocation holding ``total`` elements from ``flat[start]``, advised to
    huge pages from ``MIN_BYTES`` where the system offers them (an ordinary CPU tensor's, ``_keepable``)."""
    item = like.element_size()
    madvise = _madvise() if ENABLED and total * item >= MIN_BYTES and _keepable(like) else None
    if madvise is None:
        return like.new_empty(total), 0
    raw = like.new_empty(total + HUGE_PAGE // item)  # room to start on a huge-page boundary
    addr = raw.data_ptr()
    aligned = -(-addr // HUGE_PAGE) * HUGE_PAGE
    span = (total * item) // HUGE_PAGE * HUGE_PAGE  # the whole huge pages inside
    madvise(aligned, span, _MADV_HUGEPAGE)  # advice only: a refusal leaves ordinary pages
    return raw, (aligned - addr) // item


def carve(like, shapes):
    """Uninitialised tensors of ``shapes``, in ``like``'s dtype and device, as disjoint views of
    one allocation (on the CPU from ``MIN_BYTES`` huge-page backed where offered; from
    ``RECYCLE_MIN_BYTES`` a kept one that nothing uses any more where there is one)."""
    sizes = [math.prod(s) for s in shapes]
    total = sum(sizes)
    recycle = _recycling(like, total * like.element_size())
    found = _reuse(like, total) if recycle else None
    flat, start = found if found is not None else _allocate(like, total)
    if recycle and found is None:
        _keep(flat, start, total)
    out = []
    for shape, n in zip(shapes, sizes):
        out.append(flat[start : start + n].view(shape))
        start += n
    return out


def scratch(name: str, like, *shape):
    """An uninitialised tensor of ``shape`` in ``like``'s dtype for a temporary of one call that
    nothing outlives (not returned, not saved): a backward's per-step gradients, a transposed
    gradient. From ``SCRATCH_MIN_BYTES`` on the CPU, this thread keeps the memory under ``name`` (the
    largest asked for) and hands it out again at the next call: a training step's backward frees
    tens of megabytes of these, which the allocator may give back to the system, and the next
    step would pay a page fault for each 4 KiB of them (16 385 a step for the
    layer-normalised LSTM's backward at ``H=512`` on a Zen 5 virtual machine; benchmarks/page_faults.py).
    Two temporaries alive at once need two names. ``SCRATCH = False`` (``GATEDRNN_SCRATCH=0``):
    a fresh tensor each call, the memory given back when it goes."""
    n = math.prod(shape)
    if not SCRATCH or n * like.element_size() < SCRATCH_MIN_BYTES or not _keepable(like):
        return like.new_empty(shape)
    kept = _kept.__dict__.setdefault("buffers", {})
    key = (name, like.dtype)
    buf = kept.get(key)
    if buf is None or buf.numel() < n:
        kept.pop(key, None)
        del buf  # the smaller one is freed before the larger is made
        buf = kept[key] = like.new_empty(n)
    return buf[:n].view(shape)


def release_scratch() -> None:
    """Frees what ``scratch`` keeps for this thread."""
    _kept.__dict__.pop("buffers", None)


def release() -> None:
    """Frees what ``scratch`` keeps for this thread and every allocation ``carve`` keeps that no
    tensor uses (one in use is freed when its last view goes)."""
    release_scratch()
    with _pool_lock:
        _pool.clear()
