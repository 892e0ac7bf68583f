"""The sLSTM's specialised loop, per step like the LSTM's (docs/derivations/slstm.md).

- The input product of all steps is one product before the loop, both biases folded into it.
- The state is kept head-major inside the loop, ``(K, B, DH)`` per element (``K`` heads of ``DH``
  units), and the pre-activations ``(K, B, 4, DH)``, so each step's block-diagonal recurrent
  product is one batched product over the heads (``baddbmm``, the step's input pre-activation
  added by it); with one head that is the LSTM's single product, through ``products.Product``
  (oneDNN with the weight packed once where usable). The outputs and final state go back to
  ``(B, H)`` once, after the loop.
- The stabiliser's fresh-state rule (``m = a_i`` where ``n_{t-1} == 0``) is applied at the first
  step only: from there on ``n > 0`` (one of ``i'``, ``f'`` is exactly 1, so
  ``n_t >= min(1, n_{t-1})``), so the rule cannot apply again.
- The backward runs the BPTT in reverse with ``m`` held constant, one batched product per step for
  ``dh``, and every weight gradient as one product over all steps after the loop.

Keep masks (padding, zoneout) are left to the generic loop (``takes_keep = False``).

Symbols (and those of ``loops/common.py``): ``Gi``, ``Gf``, ``Z``, ``O``, ``C``, ``N`` ``(T, K, B, DH)``:
``i'``, ``f'``, ``tanh(a_z)``, ``sigma(a_o)``, ``c_t``, ``n_t``; ``Sf``: ``1 - sigma(a_f)``; ``Hs``, ``Cs``,
``Ns`` ``(T+1, K, B, DH)`` with the initial state first.
"""
from __future__ import annotations

import torch

from ..products import Product, hoisted, input_grad, rows, weight_grad


def _heads(v, K):
    """``(..., B, H)`` -> ``(..., K, B, DH)``, a copy in head-major order."""
    *lead, B, H = v.shape
    return v.reshape(*lead, B, K, H // K).transpose(-3, -2).contiguous()


def _unheads(v):
    """``(..., K, B, DH)`` -> ``(..., B, K*DH)``."""
    *lead, K, B, DH = v.shape
    return v.transpose(-3, -2).reshape(*lead, B, K * DH)


class SLSTMLoop:
    name = "slstm"
    #: cell name -> option -> the values this loop computes (read by torch_engine/capability.py)
    handles = {"slstm": {"bias": ..., "num_heads": ...}}
    takes_keep = False

    @staticmethod
    def _recurrent(w, K, B, backward=False):
        """``h (K, B, DH) -> (K, B, 4DH)`` (``add`` added), or its transpose for the backward."""
        DH = w.shape[1]
        wk = w.reshape(4, K, DH, DH).transpose(0, 1).reshape(K, 4 * DH, DH)  # rows (gate, unit)
        if K == 1:
            prod = Product(wk[0].t() if backward else wk[0], B)
            return lambda v, add=None: prod(v[0], None if add is None else add[0]).unsqueeze(0)
        wt = wk if backward else wk.transpose(1, 2).contiguous()  # (K, 4DH, DH) or (K, DH, 4DH)
        return lambda v, add=None: torch.bmm(v, wt) if add is None else torch.baddbmm(add, v, wt)

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, _ = x.shape
        K = cell.num_heads
        H = p["weight_ih"].shape[0] // 4
        DH = H // K
        bias = p["bias_ih"] + p["bias_hh"] if cell.bias else None
        gx = hoisted(rows(x), p["weight_ih"], bias).view(T, B, 4, K, DH).permute(0, 3, 1, 2, 4)
        gx = gx.reshape(T, K, B, 4 * DH)  # head-major: (T, K, B, 4DH), blocks i, f, z, o
        rec = SLSTMLoop._recurrent(p["weight_hh"], K, B)
        mask = p.get("mask_hh")
        mk = None if mask is None else _heads(mask, K)
        h0, c0, n0, m0 = (_heads(s, K) for s in state)
        S = T if save else 1
        Hs, Cs, Ns = (x.new_empty(T + 1, K, B, DH) for _ in range(3))
        Hs[0], Cs[0], Ns[0] = h0, c0, n0
        Gi, Gf, Z, O, Sf = (x.new_empty(S, K, B, DH) for _ in range(5))
        m = m0
        for t in range(T):
            s = t if save else 0
            h = Hs[t] if mk is None else Hs[t] * mk
            a = rec(h, gx[t]).view(K, B, 4, DH)
            a_i, a_f, a_z, a_o = a.unbind(2)
            lfm = torch.nn.functional.logsigmoid(a_f).add_(m)
            m_new = torch.maximum(a_i, lfm)
            if t == 0:
                m_new = torch.where(Ns[0] == 0, a_i, m_new)  # the fresh-state rule
            torch.exp(a_i - m_new, out=Gi[s])
            torch.exp(lfm.sub_(m_new), out=Gf[s])
            torch.tanh(a_z, out=Z[s])
            torch.sigmoid(a_o, out=O[s])
            if save:
                torch.sigmoid(a_f.neg(), out=Sf[s])
            c = torch.addcmul(Gi[s] * Z[s], Gf[s], Cs[t], out=Cs[t + 1])
            n = torch.addcmul(Gi[s], Gf[s], Ns[t], out=Ns[t + 1])
            torch.div(c, n, out=Hs[t + 1]).mul_(O[s])
            m = m_new
        state_n = tuple(_unheads(v) for v in (Hs[T], Cs[T], Ns[T], m))
        y = _unheads(Hs[1:])
        if not save:
            return y, state_n, None
        return y, state_n, {"Hs": Hs, "Cs": Cs, "Ns": Ns, "Gi": Gi, "Gf": Gf, "Z": Z, "O": O, "Sf": Sf}

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs, Cs, Ns, Gi, Gf, Z, O, Sf = (saved[k] for k in ("Hs", "Cs", "Ns", "Gi", "Gf", "Z", "O", "Sf"))
        T, B, I = x.shape
        K, DH = Hs.shape[1], Hs.shape[-1]
        H = K * DH
        rec = SLSTMLoop._recurrent(p["weight_hh"], K, B, backward=True)
        mask = p.get("mask_hh")
        mk = None if mask is None else _heads(mask, K)
        dh_n, dc_n, dn_n, _ = dstate  # the final m carries no gradient
        zero = Hs.new_zeros(K, B, DH)
        dh = zero if dh_n is None else _heads(dh_n, K)
        dc = zero if dc_n is None else _heads(dc_n, K)
        dn = zero if dn_n is None else _heads(dn_n, K)
        dyk = None if dy is None else _heads(dy, K)  # (T, K, B, DH)
        dA = x.new_empty(T, K, B, 4, DH)
        dm0 = None
        for t in reversed(range(T)):
            if dyk is not None:
                dh = dh + dyk[t]
            gi, gf, z, o, c, n, h = Gi[t], Gf[t], Z[t], O[t], Cs[t + 1], Ns[t + 1], Hs[t + 1]
            r = torch.reciprocal(n)
            da = dA[t]
            torch.mul(dh, c, out=da[:, :, 3]).mul_(r)  # do = dh c / n
            dhr = dh * r
            dc = torch.addcmul(dc, dhr, o)  # dc + dh o / n
            dn = torch.addcmul(dn, dhr, h, value=-1.0)  # dn - dh h / n
            di = torch.addcmul(dn, dc, z)  # dc z + dn
            df = torch.addcmul(dc * Cs[t], dn, Ns[t])  # dc c_prev + dn n_prev
            if t == 0:
                dm0 = df * gf  # f' = exp(log sigma(a_f) + m_{t-1} - m_t)
            torch.mul(di, gi, out=da[:, :, 0])
            torch.mul(df, gf, out=da[:, :, 1]).mul_(Sf[t])
            torch.mul(dc, gi, out=da[:, :, 2]).mul_(torch.addcmul(torch.ones_like(z), z, z, value=-1.0))
            da[:, :, 3].mul_(o * (1.0 - o))
            dc = dc * gf
            dn = dn * gf
            dh = rec(da.view(K, B, 4 * DH))
            if mk is not None:
                dh = dh * mk
        if dm0 is None:
            dm0 = torch.zeros_like(dh)
        # the weight gradients, one product each over all steps
        Hprev = Hs[:-1] if mk is None else Hs[:-1] * mk
        hk = Hprev.transpose(0, 1).reshape(K, T * B, DH)
        dak = dA.transpose(0, 1).reshape(K, T * B, 4 * DH)
        dwk = torch.bmm(dak.transpose(1, 2), hk)  # (K, 4DH, DH), rows (gate, unit)
        grads = {"weight_hh": dwk.view(K, 4, DH, DH).transpose(0, 1).reshape(4 * H, DH)}
        dgx = dA.permute(0, 2, 3, 1, 4).reshape(T * B, 4 * H)  # gate-major, as weight_ih's rows
        grads["weight_ih"] = weight_grad(dgx, x)
        if cell.bias:
            grads["bias_ih"] = dgx.sum(0)
            grads["bias_hh"] = grads["bias_ih"].clone()
        if need_dx:
            grads["x"] = input_grad(dgx, p["weight_ih"]).view(T, B, I)
        return grads, tuple(_unheads(v) for v in (dh, dc, dn, dm0))
