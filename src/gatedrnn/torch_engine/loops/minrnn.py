"""minGRU and minLSTM's specialised loop: one input product, then a linear recurrence.

Neither cell reads ``h_{t-1}`` through a weight, so a step is ``h_t = a_t * h_{t-1} + b_t`` with
coefficients that depend on the input only (docs/derivations/mingru.md):

- minGRU: ``a = 1 - z``, ``b = z * g(a_h)``;  minLSTM: ``a = f' = sigma(log sigma(a_f) - log sigma(a_i))``,
  ``b = (1 - f') * g(a_h)``.

So the forward is the input product over all ``T*B`` rows, the gates over the whole sequence at
once, and a sequential pass of one ``addcmul`` per step; the backward is the reverse recurrence
``D_t = dy_t + a_{t+1} D_{t+1}`` (one ``addcmul`` per step), the gates' gradients over the whole
sequence at once, and the weight and input gradients as one product each. The sequential pass
was measured against the log-space parallel scan (``cumsum`` and ``logcumsumexp`` over time,
what minGRU-pytorch runs) on CPU: benchmarks/RESULTS.md, "minGRU and minLSTM: sequential pass
or log-space scan".

Keep masks (zoneout, padding) fold into the coefficients: ``k h_{t-1} + (1 - k)(a h_{t-1} + b)`` is
``a' h_{t-1} + b'`` with ``a' = a + k (1 - a)``, ``b' = (1 - k) b``; the gate gradients then take
``(1 - k) D_t``, the share of ``D_t`` that went through the step.

Where the compiled kernels run (``compiled.usable``: CPU, float32/float64), the gates, the
coefficients and the recurrence of the whole sequence are one call each way
(``csrc/minrnn.cpp``: ``min_forward``, ``min_backward``), which keeps only ``gx`` and ``Hs`` and
recomputes the gates in the backward; the eager passes below are the fallback
(``GATEDRNN_CPP=0``).

Symbols (and those of ``loops/common.py``): ``Ac`` ``(T, B, H)`` the coefficients ``a'``;
``Z`` the minGRU's ``z`` or the minLSTM's ``f'``; ``Ht`` ``g(a_h)``; ``D`` the gradients ``D_t``.
"""
from __future__ import annotations

import torch

from .. import compiled
from ..products import hoisted, input_grad, rows, sum_rows, weight_grad


def _g(v):
    """``g(v)``: ``v + 0.5`` for ``v >= 0``, ``sigma(v)`` below, as ``sigma(min(v, 0)) + max(v, 0)``."""
    return torch.sigmoid(v.clamp(max=0.0)).add_(torch.relu(v))


def _g_grad(ht):
    """``g'`` from ``g``'s output: 1 where ``ht >= 1/2`` (``v >= 0``), ``ht (1 - ht)`` below."""
    return torch.where(ht >= 0.5, 1.0, ht * (1.0 - ht))


def kernel_keep(kh, T, B):
    """A keep mask as the kernels take it: ``(T, B, H)`` or ``(T, B, 1)``, contiguous (a
    ``(T, 1, 1)`` or ``(T, 1, H)`` mask expanded over the batch), or ``None``."""
    if kh is None:
        return None
    return kh.expand(T, B, kh.shape[-1]).contiguous()


def _weight_grads(cell, p, x, dA, need_dx):
    T, B, I = x.shape
    d = rows(dA)
    grads = {"weight_ih": weight_grad(d, x)}
    if cell.bias:
        grads["bias_ih"] = sum_rows(dA)
    if need_dx:
        grads["x"] = input_grad(d, p["weight_ih"]).view(T, B, I)
    return grads


class MinRNNLoop:
    name = "minrnn"
    #: cell name -> option -> the values this loop computes (read by torch_engine/capability.py)
    handles = {"mingru": {"bias": ...}, "minlstm": {"bias": ...}}

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, _ = x.shape
        w = p["weight_ih"]
        G = cell.num_gates
        H = w.shape[0] // G
        gx = hoisted(rows(x), w, p["bias_ih"] if cell.bias else None).view(T, B, G * H)
        kh = None if keep is None else keep[0]
        if compiled.usable(x):  # gates, coefficients and recurrence in one call
            Hs = x.new_empty(T + 1, B, H)
            Hs[0] = state[0]
            compiled.pointwise().min_forward(gx, Hs, cell.name == "minlstm", kernel_keep(kh, T, B))
            return Hs[1:], (Hs[T].clone(),), ({"Hs": Hs, "GX": gx} if save else None)
        ht = _g(gx[..., (G - 1) * H :])
        if cell.name == "mingru":
            z = torch.sigmoid(gx[..., :H])
            ac = torch.neg(z).add_(1.0)  # a = 1 - z
            b = z * ht
        else:
            z = torch.sigmoid(torch.nn.functional.logsigmoid(gx[..., :H]) - torch.nn.functional.logsigmoid(gx[..., H : 2 * H]))
            ac = z  # a = f'
            b = torch.neg(z).add_(1.0).mul_(ht)
        if kh is not None:
            ac = torch.lerp(ac, torch.ones((), dtype=ac.dtype, device=ac.device), kh)  # a + k (1 - a)
            b.mul_(1.0 - kh)
        (h0,) = state
        Hs = x.new_empty(T + 1, B, H)
        Hs[0] = h0
        for t in range(T):
            torch.addcmul(b[t], ac[t], Hs[t], out=Hs[t + 1])
        state_n = (Hs[T].clone(),)
        if not save:
            return Hs[1:], state_n, None
        saved = {"Hs": Hs, "Ac": ac, "Z": z, "Ht": ht}
        if cell.name == "minlstm":
            saved["Gfi"] = gx[..., : 2 * H]
        return Hs[1:], state_n, saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs = saved["Hs"]
        T, B, I = x.shape
        H = Hs.shape[-1]
        G = cell.num_gates
        (dh_n,) = dstate
        kh = None if keep is None else keep[0]
        if "GX" in saved:  # the forward ran the kernel: so does the backward
            dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n.contiguous().clone()
            dA = x.new_empty(T, B, G * H)
            compiled.pointwise().min_backward(saved["GX"], Hs, None if dy is None else dy.contiguous(), dh, dA,
                                              cell.name == "minlstm", kernel_keep(kh, T, B))
            return _weight_grads(cell, p, x, dA, need_dx), (dh,)
        ac, z, ht = saved["Ac"], saved["Z"], saved["Ht"]
        dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n
        D = x.new_empty(T, B, H)
        for t in reversed(range(T)):  # D_t = dy_t + a'_{t+1} D_{t+1}
            if dy is None:
                D[t] = dh
            else:
                torch.add(dy[t], dh, out=D[t])
            dh = ac[t] * D[t]
        E = D if kh is None else D * (1.0 - kh)  # through the step, not kept
        Hprev = Hs[:-1]
        dA = x.new_empty(T, B, G * H)
        if cell.name == "mingru":  # h = (1 - z) h_prev + z ht
            torch.sub(ht, Hprev, out=dA[..., :H]).mul_(E).mul_(z * (1.0 - z))
            torch.mul(E, z, out=dA[..., H:]).mul_(_g_grad(ht))
        else:  # h = f' h_prev + (1 - f') ht, f' = sigma(log sigma(a_f) - log sigma(a_i))
            gfi = saved["Gfi"]
            dd = torch.sub(Hprev, ht).mul_(E).mul_(z * (1.0 - z))
            torch.mul(dd, torch.sigmoid(-gfi[..., :H]), out=dA[..., :H])
            torch.mul(dd, torch.sigmoid(-gfi[..., H:]), out=dA[..., H : 2 * H]).neg_()
            torch.neg(z, out=dA[..., 2 * H :]).add_(1.0).mul_(E).mul_(_g_grad(ht))
        return _weight_grads(cell, p, x, dA, need_dx), (dh,)
