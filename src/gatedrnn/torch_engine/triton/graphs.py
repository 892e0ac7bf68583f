"""The sequence loops captured as CUDA graphs, one per shape, replayed on later calls.

    outputs = graphs.call(key, fn, inputs)   # fn(*inputs) -> list of tensors (or None)

On a GPU a step of these loops is a few microseconds of arithmetic and a few launches; launching
``T`` steps from Python costs more than running them. A CUDA graph records every launch of
``fn`` once and replays them as one. The cache is keyed by ``key`` (what the loop's code depends
on: the cell, its options, the masks present, the product dtype), by each input's shape, dtype,
stride and device, and by the float32 matmul policy (TF32 or not) the products were captured
with; anything else captures a new graph (at most ``MAX_GRAPHS``, the least recently used
dropped first).

Inputs, parameters included, are copied into the graph's own static buffers before each replay,
so a graph never holds a caller's storage: a replaced parameter (``.data =``, DropConnect's new
``weight_hh`` each call, a different layer of the same shape) needs no new capture, and updates in
place are seen. The outputs are cloned out of the graph's buffers, so a later replay does not
overwrite what an earlier call returned or saved for its backward. Capture needs CUDA tensors, no
capture already in progress on the stream, and everything ``fn`` does to be capturable; where it
fails, that key runs ``fn`` eagerly from then on. ``GATEDRNN_CUDA_GRAPHS=0`` (or ``ENABLED =
False``) turns graphs off: ``fn`` runs eagerly, the code the graph would have recorded.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import torch

ENABLED = os.environ.get("GATEDRNN_CUDA_GRAPHS", "1") != "0"
MAX_GRAPHS = 8
_graphs: OrderedDict = OrderedDict()  # key -> (replay, static inputs, static outputs)
_failed: set = set()  # keys whose capture failed: eager from then on


def _signature(inputs):
    # a graph keeps the product kernels chosen at capture: the TF32 policy is part of the key
    policy = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    return policy, tuple(None if t is None else (tuple(t.shape), t.dtype, t.stride(), t.device) for t in inputs)


def _capturable(inputs) -> bool:
    tensors = [t for t in inputs if t is not None]
    return (ENABLED and bool(tensors) and all(t.is_cuda for t in tensors)
            and not torch.cuda.is_current_stream_capturing())


def _record(fn, static_in):
    """Capture ``fn(*static_in)``: ``(replay, static outputs)``. Raises where capture fails."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compiles the kernels and warms the allocator outside capture
        fn(*static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = list(fn(*static_in))
    return graph.replay, static_out


def _capture(fn, inputs):
    """``(replay, static inputs, static outputs)``, or ``None`` where capture is impossible."""
    static_in = [None if t is None else t.detach().clone() for t in inputs]
    try:
        replay, static_out = _record(fn, static_in)
    except Exception:  # noqa: BLE001 - whatever failed, the eager call that follows raises it again or succeeds
        return None
    return replay, static_in, static_out


def call(key, fn, inputs):
    """``fn(*inputs)``, through a captured graph when the inputs allow it."""
    if not _capturable(inputs):
        return list(fn(*inputs))
    key = (key, _signature(inputs))
    entry = _graphs.get(key)
    if entry is None and key not in _failed:
        entry = _capture(fn, inputs)
        if entry is None:
            _failed.add(key)
        else:
            _graphs[key] = entry
            while len(_graphs) > MAX_GRAPHS:
                _graphs.popitem(last=False)
    if entry is None:
        return list(fn(*inputs))
    _graphs.move_to_end(key)
    replay, static_in, static_out = entry
    for s, t in zip(static_in, inputs):
        if t is not None:
            s.copy_(t)
    replay()
    return [None if o is None else o.clone() for o in static_out]


def clear() -> None:
    """Drop every captured graph (and its memory pool)."""
    _graphs.clear()
    _failed.clear()
