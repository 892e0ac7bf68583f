"""PyTorch's own recurrent kernels (oneDNN on CPU, cuDNN on GPU) for what ``torch.nn`` computes.

``engine="auto"`` hands a module to ``torch._VF.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu``
when its configuration is exactly one of ``torch.nn.LSTM``/``GRU``/``RNN``; ``native_kernel`` is
the one place that decides, everything else runs the fused engine. The weights are passed in
``torch.nn``'s flat order (per layer, per direction: ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``), which
is the order the module registers them in.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch import _VF
from torch.nn.utils.rnn import PackedSequence

from .capability import NATIVE_SEQUENCE, NATIVE_STEP, accepts
from .ops import autocast_of, keep_dtypes, transforms_active

#: dtypes PyTorch's recurrent kernels take, per device type (others fall back to the fused engine)
NATIVE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
}


def native_kernel(module, x):
    """The ``torch._VF`` function that computes ``module`` on input ``x`` exactly, or ``None``.

    ``None`` whenever the configuration is anything but plain ``torch.nn``: another cell, a
    non-default option (``forget_bias``, ``layer_norm``, ``drop_gates``, identity activations,
    ...), regularisation that acts in this mode (zoneout, recurrent dropouts: masks the kernels
    cannot take), a dtype or device the kernels do not take, or CPU autocast (whose bf16 policy
    differs from the fused engine's).
    """
    if module.engine != "auto" or transforms_active(x):  # torch.func: these kernels have no batching rules
        return None
    regularisation = getattr(module, "regularisation", None)
    if regularisation is not None and regularisation.active(module.training):
        return None
    cell = module.cell
    if not accepts(NATIVE_SEQUENCE, cell):  # what torch.nn computes, declared in capability.py
        return None
    device_type = x.device.type
    if x.dtype not in NATIVE_DTYPES.get(device_type, ()):
        return None
    amp = autocast_of(x) if device_type == "cpu" else None
    if amp is not None and not (amp[1] == torch.bfloat16 and native_bf16()):
        return None
    if cell.name == "lstm":
        return _VF.lstm
    if cell.name == "gru":
        return _VF.gru
    return _VF.rnn_tanh if cell.nonlinearity == "tanh" else _VF.rnn_relu


@functools.cache
def native_bf16() -> bool:
    """Whether this processor computes bf16 products in its own instructions (AVX512-BF16 or AMX), so
    oneDNN's bf16 recurrent kernels run, and faster than float32: under CPU bf16 autocast
    ``engine="auto"`` hands them a ``torch.nn`` configuration, as it does outside autocast.
    Elsewhere oneDNN refuses them (AVX2 processors: a primitive error) or emulates bf16, and the
    fused engine runs instead (benchmarks/RESULTS.md, "bf16 on a processor that has it")."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(check is not None and check() for check in checks)


def step_kernel(cell, params: dict, x=None):
    """A function ``(x (B, I), state) -> state`` that computes ``cell.step`` on its projected
    input with PyTorch's single-step kernel (what ``torch.nn.LSTMCell``/``GRUCell``/``RNNCell``
    call), or ``None``: for plain ``lstm`` (no projection), ``gru`` and ``rnn`` only, without state
    dropout (``mask_hh``), in the dtypes the sequence kernels take, and, given the input ``x``,
    outside CPU autocast (without ``x``, the caller checks autocast at each call)."""
    if not accepts(NATIVE_STEP, cell) or "mask_hh" in params:
        return None
    w = (params["weight_ih"], params["weight_hh"], params.get("bias_ih"), params.get("bias_hh"))
    if any(t is not None and t.dtype not in NATIVE_DTYPES.get(t.device.type, ()) for t in w):
        return None
    if x is not None and (x.dtype != w[0].dtype or cpu_autocast(x)):
        return None
    if cell.name == "lstm":
        return lambda x, state: _VF.lstm_cell(x, state, *w)
    fn = _VF.gru_cell if cell.name == "gru" else (
        _VF.rnn_tanh_cell if cell.nonlinearity == "tanh" else _VF.rnn_relu_cell)
    return lambda x, state: (fn(x, state[0], *w),)


def cpu_autocast(x) -> bool:
    """Whether ``x`` is computed under CPU autocast, whose dtype policy the fused engine keeps."""
    return x.device.type == "cpu" and autocast_of(x) is not None


#: torch.nn's modes cuDNN runs (``torch.backends.cudnn.rnn.get_cudnn_mode``)
CUDNN_MODES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")


def flatten_for_cudnn(module) -> None:
    """``torch.nn.RNNBase.flatten_parameters``: on CUDA with cuDNN, the weights of a module whose
    configuration ``torch.nn`` computes are moved into one contiguous buffer that cuDNN reads as
    is (else it compacts them at every call, and warns that it does); nothing elsewhere."""
    weights = module._flat_weights
    if module.mode not in CUDNN_MODES or not accepts(NATIVE_SEQUENCE, module.cell):
        return
    if len(weights) != len(module._flat_weights_names) or not all(isinstance(w, torch.Tensor) for w in weights):
        return
    first = weights[0]
    if any(w.dtype != first.dtype or not w.is_cuda or not torch.backends.cudnn.is_acceptable(w) for w in weights):
        return
    if len({w.data_ptr() for w in weights}) != len(weights):  # aliased parameters: leave them
        return
    from torch.backends.cudnn import rnn as cudnn_rnn

    with torch.cuda.device_of(first), torch.no_grad():
        if torch._use_cudnn_rnn_flatten_weight():
            torch._cudnn_rnn_flatten_weight(
                weights, (4 if module.bias else 2) + (1 if module.proj_size else 0), module.input_size,
                cudnn_rnn.get_cudnn_mode(module.mode), module.hidden_size, module.proj_size, module.num_layers,
                module.batch_first, bool(module.bidirectional))


def flat_weights(module) -> list:
    """The parameters in ``torch.nn``'s ``_flat_weights`` order, read by name (so that
    ``torch.func.functional_call``'s substitutes are the ones used)."""
    return [getattr(module, name) for name in module._flat_weights_names]


#: what ``torch.nn.LSTM`` says on CPU when it leaves oneDNN for its own loop: the library chose
#: that kernel for a module with projections, so the warning would only be noise to its users
_ONEDNN_PROJECTION_WARNING = "LSTM with projections is not supported with oneDNN"


def _run_kernel(kernel, proj_size: int, *args):
    if not proj_size:
        return kernel(*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ONEDNN_PROJECTION_WARNING)
        return kernel(*args)


# torch._disable_dynamo imports dynamo at its first call only (torch.compiler.disable would import
# it, and with it triton, when this module is imported); a plain call where it is missing
_run_kernel_outside_graph = getattr(torch, "_disable_dynamo", lambda fn: fn)(_run_kernel)


def _call_quietly(kernel, proj_size: int, *args):
    """``kernel(*args)`` without the projection warning; under ``torch.compile`` outside the
    graph, as ``torch.nn``'s RNN modules are (dynamo leaves them to eager): inductor cannot
    compile the oneDNN RNN layer the traced kernel decomposes into (torch 2.13 on CPU: "expected
    Tensor() for op: torch.ops.aten.mkldnn_rnn_layer.default")."""
    if torch.compiler.is_compiling():
        return _run_kernel_outside_graph(kernel, proj_size, *args)
    return _run_kernel(kernel, proj_size, *args)


def native_forward(module, kernel, input, state0, batched: bool):
    """Run ``kernel`` as ``torch.nn`` does. ``state0``: validated tuple of ``(L*D, B, size)`` in
    the caller's batch order. Returns ``(output, state_n)`` in ``forward``'s public form. Under CPU
    autocast the kernel computes in bf16, and its output and final state come back in the input's
    and initial state's dtypes, as the fused engine returns them (within the call the carried state
    is the kernel's bf16)."""
    weights = flat_weights(module)
    back = cpu_autocast(input.data if isinstance(input, PackedSequence) else input)
    args = (module.bias, module.num_layers, module.dropout, module.training, module.bidirectional)
    if isinstance(input, PackedSequence):
        if input.sorted_indices is not None:
            state0 = tuple(s.index_select(1, input.sorted_indices) for s in state0)
        hx = state0 if len(state0) > 1 else state0[0]
        result = _call_quietly(kernel, module.proj_size, input.data, input.batch_sizes, hx, weights, *args)
        data = result[0].to(input.data.dtype) if back else result[0]
        output = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        state_n = tuple(result[1:])
        if input.unsorted_indices is not None:
            state_n = tuple(s.index_select(1, input.unsorted_indices) for s in state_n)
    else:
        x = input if batched else input.unsqueeze(1)
        hx = state0 if len(state0) > 1 else state0[0]
        result = _call_quietly(kernel, module.proj_size, x, hx, weights, *args, module.batch_first and batched)
        output, state_n = result[0], tuple(result[1:])
        if back:
            output = output.to(x.dtype)
        if not batched:
            output = output.squeeze(1)
            state_n = tuple(s.squeeze(1) for s in state_n)
    if back:
        state_n = keep_dtypes(state_n, state0)
    return output, (state_n if len(state_n) > 1 else state_n[0])
