"""The GRU's specialised loop: blocks ``r, z, n``, ``n = tanh(a_x,n + r * a_h,n)`` with ``b_hn``
inside ``a_h,n`` (PyTorch's placement), ``h = n + z (h_prev - n)``.

Symbols (and those of ``loops/common.py``): ``Gs`` ``(S, B, 3H)``: the gates ``r, z, n`` after
their activations; ``GHn`` ``(S, B, H)``: ``a_h,n``, the recurrent product's ``n`` block, which the
``r`` gradient needs; ``dGX``, ``dGH`` ``(T, B, 3H)``: the gradients of the input and of the
recurrent pre-activations (they differ in the ``n`` block, where ``r`` multiplies the recurrent
side). The recurrent biases stay in the recurrent product, whose ``n`` block meets ``r``.
"""
from __future__ import annotations

import torch

from .. import buffers, compiled
from .common import Recurrent, add_carry, bias_grads, input_backward, input_forward, keep_masks, lerp_into, split_carry


def _compiled_bptt(ck, Gs, GHn, Hs, dh, dy, dGX, dGH, hh, kh):
    """The backward's loop over steps with the compiled kernel ``ck``: each call adds the step's
    ``dy`` and what reached ``h_t`` outside the product (``dh z``, zoneout's kept share) to the
    product's ``dh``; returns ``dL/dh_0``."""
    T, B, _ = dGX.shape
    H = Hs.shape[-1]
    dy = None if dy is None else dy.contiguous()
    khf = None if kh is None else kh.expand(T, B, H).contiguous()
    carries = (torch.empty_like(dh), torch.empty_like(dh))
    carry = None
    for t in reversed(range(T)):
        out = carries[t % 2]
        ck.gru_backward(Gs[t], GHn[t], Hs[t], dh, carry, None if dy is None else dy[t], dGX[t], dGH[t],
                        None if khf is None else khf[t], out)
        carry = out
        dh = hh.backward(dGH[t], t)
    return dh.add_(carry)


class GRULoop:
    name = "gru"
    #: cell name -> option -> the values this loop computes (``...``: any); an option it does not
    #: name must keep the cell's default (read by torch_engine/capability.py)
    handles = {"gru": {"bias": ..., "layer_norm": ...}}

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 3
        (kh,) = keep_masks(keep, 1)
        S = T if save else 1
        b_hh = p["bias_hh"] if cell.bias else None
        if cell.layer_norm:  # the recurrent constants stay inside a_h (its n block meets r)
            ln_bias, add = (p["ln_bias_hh"] if b_hh is None else p["ln_bias_hh"] + b_hh), None
        else:
            ln_bias, add = None, b_hh
        gx, saved = input_forward(cell, p, x, p["bias_ih"] if cell.bias else None)
        hh = Recurrent(cell, p, B, S, x, ln_bias=ln_bias)
        (h0,) = state
        Hs, = buffers.carve(x, [(T + 1, B, H)])  # y is Hs[1:], an allocation of its own
        Hs[0] = h0
        Gs, GHn = buffers.carve(x, [(S, B, 3 * H), (S, B, H)])  # r, z, n; a_h,n, which the r gradient needs
        hnew = x.new_empty(B, H) if kh is not None else None
        ck = compiled.pointwise() if compiled.usable(x) else None  # the step's elementwise work in one call
        khf = None if kh is None or ck is None else kh.expand(T, B, H).contiguous()
        for t in range(T):
            s = t if save else 0
            gh = hh(Hs[t], s, add)  # (B, 3H)
            if ck is not None:
                ck.gru_forward(gx[t], gh, Hs[t], Gs[s], GHn[t] if save else None, Hs[t + 1],
                               None if khf is None else khf[t])
                continue
            gt = Gs[s]
            rz = gt[:, : 2 * H]
            torch.add(gx[t, :, : 2 * H], gh[:, : 2 * H], out=rz)
            rz.sigmoid_()
            n = gt[:, 2 * H :]
            torch.addcmul(gx[t, :, 2 * H :], gt[:, :H], gh[:, 2 * H :], out=n)
            n.tanh_()
            if save:
                GHn[t].copy_(gh[:, 2 * H :])
            hn = Hs[t + 1] if kh is None else hnew  # h = n + z (h_prev - n)
            torch.sub(Hs[t], n, out=hn)
            hn.mul_(gt[:, H : 2 * H]).add_(n)
            if kh is not None:
                lerp_into(Hs[t + 1], hn, Hs[t], kh[t])
        if not save:
            return Hs[1:], (Hs[T].clone(),), None
        saved.update(Hs=Hs, Gs=Gs, GHn=GHn, **hh.saved())
        return Hs[1:], (Hs[T].clone(),), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs, Gs, GHn = saved["Hs"], saved["Gs"], saved["GHn"]
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 3
        (kh,), (nkh,) = keep_masks(keep, 1, complement=True)
        hh = Recurrent(cell, p, B, T, x, saved, backward=True)
        (dh_n,) = dstate
        dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n
        dGX = buffers.scratch("gru.dGX", x, T, B, 3 * H)  # gradient w.r.t. the input pre-activations
        dGH = buffers.scratch("gru.dGH", x, T, B, 3 * H)  # ... and the recurrent ones (n block times r)
        tmp = x.new_empty(B, 2 * H)
        one = x.new_ones(())
        ck = compiled.pointwise() if compiled.usable(x) else None  # as the forward chose
        if ck is not None:
            dh = _compiled_bptt(ck, Gs, GHn, Hs, dh.contiguous(), dy, dGX, dGH, hh, kh)
        else:
            for t in reversed(range(T)):
                if dy is not None:
                    dh = dh + dy[t]
                carry_h, dh = split_carry(dh, kh, nkh, t)
                gt, dgx, dgh = Gs[t], dGX[t], dGH[t]
                r, z, n = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H :]
                dar, daz, dan = dgx[:, :H], dgx[:, H : 2 * H], dgx[:, 2 * H :]
                torch.addcmul(dh, dh, z, value=-1.0, out=dan)  # dL/dn = dh (1 - z)
                torch.addcmul(one, n, n, value=-1.0, out=tmp[:, :H])
                dan.mul_(tmp[:, :H])
                torch.sub(Hs[t], n, out=daz)  # dL/dz = dh (h_prev - n)
                daz.mul_(dh)
                torch.mul(dan, GHn[t], out=dar)  # dL/dr = da_n a_h,n
                rz = gt[:, : 2 * H]
                torch.addcmul(rz, rz, rz, value=-1.0, out=tmp)
                dgx[:, : 2 * H].mul_(tmp)
                dgh.copy_(dgx)
                dgh[:, 2 * H :].mul_(r)
                dh = add_carry(hh.backward(dgh, t).addcmul_(dh, z), carry_h)
        grads = {}
        hh.grads(dGH, Hs[:-1], grads)
        input_backward(cell, p, x, saved, dGX, need_dx, grads)
        bias_grads(cell, dGX, grads, "bias_ih")
        bias_grads(cell, dGH, grads, "bias_hh", "ln_bias_hh")
        return grads, (dh,)
