"""The torch twin of ``gatedrnn.cells.base.NumpyOps``: the cells' math runs on tensors unchanged."""
from __future__ import annotations

import torch


class TorchOps:
    name = "torch"
    sigmoid = staticmethod(torch.sigmoid)
    tanh = staticmethod(torch.tanh)
    relu = staticmethod(torch.relu)
    rsqrt = staticmethod(torch.rsqrt)
    zeros_like = staticmethod(torch.zeros_like)

    @staticmethod
    def positive(a):
        return (a > 0).to(a.dtype)

    @staticmethod
    def mean_last(a):
        if a.dtype in (torch.float16, torch.bfloat16):
            # layer norm's statistics (a product's output under autocast): a - mean(a) in half
            # precision cancels to a few bits, so the mean is float32 and so is all that follows
            return a.mean(-1, keepdim=True, dtype=torch.float32)
        return a.mean(-1, keepdim=True)

    @staticmethod
    def cat(tensors, axis=-1):
        return torch.cat(tensors, dim=axis)

    @staticmethod
    def stack(tensors, axis=0):
        return torch.stack(tensors, dim=axis)


TORCH_OPS = TorchOps()
