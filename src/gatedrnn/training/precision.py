"""The precision a run computes its forward in: ``--precision auto`` resolved for this model on
this device.

bf16 autocast pays only where the processor multiplies bf16 itself (AVX512-BF16 or AMX:
``torch_engine.native.native_bf16``) and the recurrent layers run on torch's oneDNN kernels under
it (``resolve_engine`` says ``"torch"``): there a training step of the default character model
takes about two thirds of its float32 time (benchmarks/RESULTS.md, "bf16 on a processor that has
it"). A cell the fused engine runs falls back to its autocast loop, slower than its float32
kernels; a processor without bf16 arithmetic refuses or emulates oneDNN's bf16 kernels; and CUDA
has not been measured: all of those stay float32.
"""
from __future__ import annotations

import torch

from ..torch_engine.native import native_bf16


def resolve_precision(precision: str, model: torch.nn.Module, device: torch.device) -> str:
    """``"float32"`` or ``"bf16"``: ``precision`` itself unless it is ``"auto"``."""
    if precision != "auto":
        return precision
    if torch.device(device).type != "cpu" or not native_bf16():
        return "float32"
    layers = [m for m in model.modules() if hasattr(m, "resolve_engine")]
    probe = torch.empty(0, device=device)  # resolve_engine reads the input's dtype and device only
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if layers and all(m.resolve_engine(probe) == "torch" for m in layers):
            return "bf16"
    return "float32"
