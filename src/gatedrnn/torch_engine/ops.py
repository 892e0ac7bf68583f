"""The torch twin of ``gatedrnn.cells.base.NumpyOps``: the cells' math runs on tensors unchanged;
and the engine's one autocast helper."""
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
    def new_zeros(like, shape):
        return like.new_zeros(shape)

    @staticmethod
    def keep_mix(keep, prev, new):  # zoneout and padding: keep * prev + (1 - keep) * new
        return torch.lerp(new, prev, keep)

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


def autocast_of(x):
    """``(device type, dtype)`` of the autocast region that ``x`` is computed in, or ``None``."""
    kind = x.device.type
    try:
        if torch.is_autocast_enabled(kind):
            return kind, torch.get_autocast_dtype(kind)
    except RuntimeError:  # a device type autocast does not know
        pass
    return None


def keep_dtypes(new, state):
    """``new`` in the dtypes of ``state``: under autocast a product makes a state (a projected
    ``h``, the ``h`` of a cell without biases) half precision; it stays in the initial state's
    dtype (the cell state ``c`` above all) so the loop's dtypes do not drift."""
    return tuple(n if n.dtype == s.dtype else n.to(s.dtype) for n, s in zip(new, state))
