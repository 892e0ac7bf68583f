"""IndRNN's specialised loop: ``h_t = act(gx_t + w_hh * h_{t-1})``, one input product, then a
recurrence per unit (``w_hh`` ``(H,)``, no recurrent product).

The forward is the input product over all ``T*B`` rows with both biases folded in (``gx``),
then the recurrence; the backward is the reverse recurrence ``dh_{t-1} = da_t w_hh`` (with
state dropout ``mask_hh`` on what ``w_hh`` reads, and the keep masks' carried share), then
``weight_ih``'s gradient and the input's as one product each; ``weight_hh``'s gradient is the
sum over steps and rows of ``da_t h_read``. Where the compiled kernels run
(``compiled.usable``), the recurrence of the whole sequence is one call each way
(``csrc/minrnn.cpp``: ``ind_forward``, ``ind_backward``, which also sums ``weight_hh``'s and
the biases' gradients per row); else one step's torch calls at a time (``GATEDRNN_CPP=0``).

Symbols (and those of ``loops/common.py``): ``A`` ``(T, B, H)``: ``act(a_t)``, the step's ``h``
before the keep mask (with keep masks only; without, it is ``Hs[1:]``); ``act'`` is read from it:
``1 - h^2`` for ``tanh``, ``h > 0`` for ``relu``.
"""
from __future__ import annotations

import torch

from .. import compiled
from .common import add_carry, combined_bias, input_backward, input_forward, keep_masks, lerp_into, split_carry
from .minrnn import kernel_keep


class IndRNNLoop:
    name = "indrnn"
    #: cell name -> option -> the values this loop computes (read by torch_engine/capability.py)
    handles = {"indrnn": {"bias": ..., "nonlinearity": ...}}

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        w = p["weight_hh"]
        H = w.shape[0]
        (kh,) = keep_masks(keep, 1)
        mask = p.get("mask_hh")
        gx, saved = input_forward(cell, p, x, combined_bias(cell, p, 1, H, x))
        (h0,) = state
        Hs = x.new_empty(T + 1, B, H)
        Hs[0] = h0
        if compiled.usable(x):  # the whole recurrence in one call; with kh, gx becomes act(a)
            compiled.pointwise().ind_forward(gx, Hs, w.contiguous(), cell.nonlinearity == "relu",
                                             None if mask is None else mask.contiguous(), kernel_keep(kh, T, B))
            A = gx if kh is not None else None
        else:
            tanh = cell.nonlinearity == "tanh"
            A = gx if kh is not None else None  # act(a_t) written over gx
            read = x.new_empty(B, H) if mask is not None else None
            for t in range(T):
                h_read = Hs[t] if mask is None else torch.mul(Hs[t], mask, out=read)
                out = Hs[t + 1] if kh is None else gx[t]
                torch.addcmul(gx[t], w, h_read, out=out)
                out.tanh_() if tanh else out.relu_()
                if kh is not None:
                    lerp_into(Hs[t + 1], out, Hs[t], kh[t])
        if not save:
            return Hs[1:], (Hs[T].clone(),), None
        saved.update(Hs=Hs, A=A, kernel=compiled.usable(x))
        return Hs[1:], (Hs[T].clone(),), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs = saved["Hs"]
        A = Hs[1:] if saved.get("A") is None else saved["A"]
        T, B, I = x.shape
        w = p["weight_hh"]
        H = w.shape[0]
        mask = p.get("mask_hh")
        (kh,), (nkh,) = keep_masks(keep, 1, complement=True)
        (dh_n,) = dstate
        dA = x.new_empty(T, B, H)
        grads = {}
        if saved["kernel"]:
            dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n.contiguous().clone()
            dw, db = x.new_empty(B, H), (x.new_empty(B, H) if cell.bias else None)
            compiled.pointwise().ind_backward(A, Hs, None if dy is None else dy.contiguous(), dh, dA, w.contiguous(),
                                              cell.nonlinearity == "relu", None if mask is None else mask.contiguous(),
                                              kernel_keep(kh, T, B), dw, db)
            grads["weight_hh"] = dw.sum(0)
            bias = None if db is None else db.sum(0)
        else:
            dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n
            one = x.new_ones(())
            wm = w if mask is None else w * mask  # what dh_{t-1} takes of da_t
            for t in reversed(range(T)):
                if dy is not None:
                    dh = dh + dy[t]
                carry_h, dh = split_carry(dh, kh, nkh, t)
                h, da = A[t], dA[t]
                if cell.nonlinearity == "tanh":
                    torch.addcmul(one, h, h, value=-1.0, out=da)
                else:
                    torch.gt(h, 0, out=da)  # relu' from its output
                da.mul_(dh)
                dh = add_carry(da * wm, carry_h)
            h_read = Hs[:-1] if mask is None else Hs[:-1] * mask
            grads["weight_hh"] = (dA * h_read).sum((0, 1))
            bias = dA.sum((0, 1)) if cell.bias else None
        input_backward(cell, p, x, saved, dA, need_dx, grads)
        if bias is not None:
            grads["bias_ih"], grads["bias_hh"] = bias, bias.clone()
        return grads, (dh,)
