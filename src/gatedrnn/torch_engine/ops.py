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
    exp = staticmethod(torch.exp)
    maximum = staticmethod(torch.maximum)
    where = staticmethod(torch.where)
    log_sigmoid = staticmethod(torch.nn.functional.logsigmoid)

    @staticmethod
    def stop_gradient(a):
        return a.detach()

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


_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_functorch = getattr(torch._C, "_functorch", None)
_wrapped = getattr(_functorch, "is_functorch_wrapped_tensor", None)
_legacy = getattr(_functorch, "is_legacy_batchedtensor", None)  # autograd.grad's is_grads_batched


def _batched(t) -> bool:
    return (_wrapped is not None and _wrapped(t)) or (_legacy is not None and _legacy(t))


def transforms_active(*tensors) -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``, ``jvp``, ...) is active,
    or one of ``tensors`` is batched by one (a backward vmapped over its gradients, as in
    ``autograd.grad(..., is_grads_batched=True)``, sees only that)."""
    if _transforms_active is not None and _transforms_active():
        return True
    return any(t is not None and _batched(t) for t in tensors)


def eager(*tensors) -> bool:
    """Whether ``tensors`` are computed eagerly, op by op: no ``torch.compile`` or ``torch.jit``
    trace and no ``torch.func`` transform (what a compiled kernel's raw pointers, a seed read with
    ``.item()`` or memory kept for a later call need), and none of them a tensor subclass (a fake
    tensor of a trace)."""
    return (not torch.compiler.is_compiling() and not torch.jit.is_tracing() and not transforms_active(*tensors)
            and all(t is None or type(t) is torch.Tensor or type(t) is torch.nn.Parameter for t in tensors))


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
