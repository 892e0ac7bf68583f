"""The Elman RNN's specialised loop: ``h_t = act(x_t W_ih^T + h_{t-1} W_hh^T + b)``.

Symbols (and those of ``loops/common.py``): ``A`` ``(S, B, H)``: ``act(a_t)``, the step's
``h`` before zoneout (saved only with keep masks; without, it is ``Hs[1:]``); ``da``: the
step's pre-activation gradient, a row of ``dA``. ``act'`` is read from the output: ``1 - h^2``
for ``tanh``, ``h > 0`` for ``relu``.
"""
from __future__ import annotations

import torch

from .. import buffers
from .common import Recurrent, add_carry, combined_bias, input_forward, keep_masks, lerp_into, split_carry, summed_products_grads


class RNNLoop:
    name = "rnn"
    #: cell name -> option -> the values this loop computes (``...``: any); an option it does not
    #: name must keep the cell's default (read by torch_engine/capability.py)
    handles = {"rnn": {"bias": ..., "layer_norm": ..., "nonlinearity": ...}}

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        H = p["weight_hh"].shape[0]
        (kh,) = keep_masks(keep, 1)
        S = T if save else 1
        gx, saved = input_forward(cell, p, x, combined_bias(cell, p, 1, H, x))
        hh = Recurrent(cell, p, B, S, x)
        act = torch.tanh if cell.nonlinearity == "tanh" else torch.relu
        (h0,) = state
        Hs, = buffers.carve(x, [(T + 1, B, H)])  # y is Hs[1:], an allocation of its own
        Hs[0] = h0
        A = buffers.carve(x, [(S, B, H)])[0] if kh is not None else None  # act(a_t), before zoneout
        for t in range(T):
            s = t if save else 0
            a = act(hh(Hs[t], s, gx[t]))
            if kh is None:
                Hs[t + 1] = a
            else:
                A[s] = a
                lerp_into(Hs[t + 1], a, Hs[t], kh[t])
        if not save:
            return Hs[1:], (Hs[T].clone(),), None
        saved.update(Hs=Hs, A=A, **hh.saved())
        return Hs[1:], (Hs[T].clone(),), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs = saved["Hs"]
        A = Hs[1:] if saved.get("A") is None else saved["A"]
        T, B, I = x.shape
        (kh,), (nkh,) = keep_masks(keep, 1, complement=True)
        hh = Recurrent(cell, p, B, T, x, saved, backward=True)
        (dh_n,) = dstate
        dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n
        dA = buffers.scratch("rnn.dA", x, T, B, Hs.shape[-1])
        one = x.new_ones(())
        tanh = cell.nonlinearity == "tanh"
        for t in reversed(range(T)):
            if dy is not None:
                dh = dh + dy[t]
            carry_h, dh = split_carry(dh, kh, nkh, t)
            h, da = A[t], dA[t]
            if tanh:
                torch.addcmul(one, h, h, value=-1.0, out=da)
            else:
                torch.gt(h, 0, out=da)  # relu' from its output
            da.mul_(dh)
            dh = add_carry(hh.backward(da, t), carry_h)
        grads = summed_products_grads(cell, p, x, saved, hh, dA, Hs, need_dx)
        return grads, (dh,)
