"""The Mogrifier's specialised loop (``rounds >= 1``, without layer norm): rounds of
``x = 2 sigma(h Q^T) x`` / ``h = 2 sigma(x R^T) h``, then an LSTM step whose two products are
one, ``[x, h] @ [W_ih, W_hh]^T``, so the weight gradients are one product too; the step's
elementwise work is the LSTM loop's (``loops/lstm.py``, ``Pointwise``). Where the compiled
kernels run (``compiled.py``), each round's elementwise work is one call of
``csrc/mogrifier.cpp`` (forward: the gate, the gated vector and, for a vector's last round, its
copy into the step's ``[x, h]``; backward: the pre-activation's gradient and the input's), the
step's the LSTM kernel's; the eager calls below are the fallback. Where it can, a step's rounds
are one call of the kernel (``mogrify_step_forward``, ``mogrify_step_backward``), each round's
product done there on the kernel ``Product`` chose (MKL, or oneDNN on the weight it packed), with
no Python between rounds; one call per round (``_rounds_compiled``) where it cannot (``STEP``).

Symbols (and those of ``loops/common.py`` and ``loops/lstm.py``), per step ``t``:

- ``x^(k)``: ``x`` after ``k`` odd rounds (``x^(0) = x_t``, the rest in ``Xm[k-1, t]``, but for
  the last where ``Xm`` holds ``nq - 1`` rounds: with more odd rounds than even ones, as the default
  5, no ``R_k`` reads the last ``x``, so it is written into ``XH`` alone);
  ``h^(k)``: ``h`` after ``k`` even rounds (``h^(0) = h_{t-1}``, the rest in ``Hm[k-1, t]``).
  Odd round ``j`` (``k = (j-1)//2``) reads ``x^(k), h^(k)``; even round ``j`` (``k = j//2 - 1``)
  reads ``x^(k+1), h^(k)``.
- ``SQ`` ``(nq, S, B, I)``, ``SR`` ``(nr, S, B, H)``: each round's gate ``sigma(.)``; ``nq``,
  ``nr``: the number of odd and even rounds. Round-major, as ``Xm`` ``(nx, S, B, I)`` (``nx =
  x_rounds_kept(nq, nr)``) and ``Hm`` ``(nr, S, B, H)``, so a round's rows over a chunk of steps
  are one contiguous block, which the weight gradients' products read as they lie.
- ``XH`` ``(S, B, I+H)``: the modulated ``[x, h]`` the step's product reads (``h`` times
  ``mask_hh`` with state dropout).
- ``dZQ`` ``(nq, L, B, I)``, ``dZR`` ``(nr, L, B, H)``: the gradients of the rounds'
  pre-activations, kept for a chunk of ``L`` (``CHUNK``) steps whose weight gradients are then one
  product each.
"""
from __future__ import annotations

import torch

from .. import buffers
from ..products import Product, add_weight_grad, rows
from .common import add_carry, combined_bias, keep_masks, split_carry
from .lstm import CompiledStep, Pointwise, mix_out

#: steps whose pre-activation gradients the Mogrifier's backward holds at once (see its backward)
CHUNK = 16
#: whether a step's rounds run as one call of the compiled kernel where the kernels run (off: one
#: call per round, as also where the kernel cannot call oneDNN's product and a weight is packed for it)
STEP = True


def step_weights(kern, prods):
    """What the per-step kernel takes of rounds' products: each ``Product``'s weight (oneDNN's packed
    one, else ``W^T`` for ``torch.mm``) and whether it is the packed one; ``None`` where the per-step
    kernel does not run (off, or a packed weight and no oneDNN call from C++ here). Without rounds
    (``rounds=0``, the LSTM, which this loop runs only when asked to directly) it does not either."""
    weights = [p.kernel_weight(kern) for p in prods]
    if not STEP or None in weights:
        return None
    return [w for w, _ in weights], [packed for _, packed in weights]


def mogrifier_matrices(cell, p, name, n):
    """``Q_k`` ``(I, R)`` / ``R_k`` ``(R, I)`` for ``k < n`` (products of factors with ``rank``)."""
    return [cell.matrix(p, name, k) for k in range(n)]


def x_rounds_kept(nq: int, nr: int) -> int:
    """How many rounds of ``x`` ``Xm`` keeps: all ``nq`` but the last where no ``R_k`` reads it
    (``nq > nr``; at least one slot, so one round keeps its own)."""
    return max(nq - 1, 1) if nq > nr else nq


def _rounds_eager(cell, qs, rs, xk, hk, Xm, Hm, SQ, SR, xh, mask, zero):
    """One step's rounds (``Xm``, ``Hm``, ``SQ``, ``SR``: this step's rows), their last ``x``
    and ``h`` into ``xh``, ``[x, h]``: three torch calls a round."""
    I = xk.shape[1]
    for j in range(1, cell.rounds + 1):
        if j % 2:
            k = (j - 1) // 2
            torch.sigmoid(qs[k](hk), out=SQ[k])
            xk = torch.addcmul(zero, SQ[k], xk, value=2.0, out=Xm[k] if k < len(Xm) else xh[:, :I])
        else:
            k = j // 2 - 1
            torch.sigmoid(rs[k](xk), out=SR[k])
            hk = torch.addcmul(zero, SR[k], hk, value=2.0, out=Hm[k])
    if len(Xm) == len(qs):  # else the last round wrote it there
        xh[:, :I] = xk
    if mask is None:
        xh[:, I:] = hk
    else:  # state dropout: only the product sees the dropped h
        torch.mul(hk, mask, out=xh[:, I:])


def _rounds_compiled(kern, cell, qs, rs, xk, hk, Xm, Hm, SQ, SR, xh, mask):
    """The same, each round's elementwise work one call of the kernel (``csrc/mogrifier.cpp``),
    the last round of each vector also writing it into ``xh`` (through ``mask`` for ``h``)."""
    I = xk.shape[1]
    nq, nr = len(qs), len(rs)
    for j in range(1, cell.rounds + 1):
        if j % 2:
            k = (j - 1) // 2
            kept = k < len(Xm)  # else the last x, which only xh keeps
            out = Xm[k] if kept else xh[:, :I]
            kern.mogrify_forward(qs[k](hk), xk, SQ[k], out, xh[:, :I] if k == nq - 1 and kept else None, None)
            xk = out
        else:
            k = j // 2 - 1
            last = k == nr - 1
            kern.mogrify_forward(rs[k](xk), hk, SR[k], Hm[k], xh[:, I:] if last else None, mask if last else None)
            hk = Hm[k]
    if nq == 0:  # no rounds (the LSTM)
        xh[:, :I] = xk
    if nr == 0:  # at most one round: h reaches the product as it is
        if mask is None:
            xh[:, I:] = hk
        else:
            torch.mul(hk, mask, out=xh[:, I:])


def _rounds_backward_eager(cell, qs_t, rs_t, dxh, I, x_t, h_t, Xm, Hm, SQ, SR, dZQ, dZR, dx_out, mask, zero,
                           dsq, dsr):
    """One step's rounds read bottom-up from ``dxh``, the gradient of ``[x, h]`` (``Xm``, ``Hm``,
    ``SQ``, ``SR``, ``dZQ``, ``dZR``: this step's rows): the rounds' pre-activation gradients into
    ``dZQ``, ``dZR``, ``dL/dx_t`` into ``dx_out``; returns ``dL/dh_{t-1}`` through the rounds."""
    dx, dh = dxh[:, :I].contiguous(), dxh[:, I:].contiguous()
    if mask is not None:
        dh.mul_(mask)
    for j in range(cell.rounds, 0, -1):
        if j % 2:  # x^(k+1) = 2 s x^(k), s = sigma(h^(k) Q_k^T)
            k = (j - 1) // 2
            s, dz = SQ[k], dZQ[k]
            torch.mul(dx, x_t if k == 0 else Xm[k - 1], out=dz)
            torch.addcmul(zero, dx, s, value=2.0, out=dx)
            torch.addcmul(zero, dz, torch.addcmul(s, s, s, value=-1.0, out=dsq), value=2.0, out=dz)
            dh.add_(qs_t[k](dz))
        else:  # h^(k+1) = 2 s h^(k), s = sigma(x^(k+1) R_k^T)
            k = j // 2 - 1
            s, dz = SR[k], dZR[k]
            torch.mul(dh, h_t if k == 0 else Hm[k - 1], out=dz)
            torch.addcmul(zero, dh, s, value=2.0, out=dh)
            torch.addcmul(zero, dz, torch.addcmul(s, s, s, value=-1.0, out=dsr), value=2.0, out=dz)
            dx.add_(rs_t[k](dz))
    dx_out.copy_(dx)
    return dh


def _rounds_backward_compiled(kern, cell, qs_t, rs_t, dxh, I, x_t, h_t, Xm, Hm, SQ, SR, dZQ, dZR, dx_out, mask,
                              dhm):
    """The same, each round's elementwise work one call of the kernel, which reads ``dxh``'s two
    halves where they lie (no copies); the last round writes ``dL/dx_t`` into ``dx_out``. Each
    round's product adds its share to the other vector's gradient inside the product's kernel."""
    dx, dh = dxh[:, :I], dxh[:, I:]
    if mask is not None:
        dh = torch.mul(dh, mask, out=dhm)
    for j in range(cell.rounds, 0, -1):
        if j % 2:
            k = (j - 1) // 2
            out = dx_out if j == 1 else dx
            kern.mogrify_backward(dx, x_t if k == 0 else Xm[k - 1], SQ[k], dZQ[k], out)
            dx = out
            dh = qs_t[k](dZQ[k], dh)
        else:
            k = j // 2 - 1
            kern.mogrify_backward(dh, h_t if k == 0 else Hm[k - 1], SR[k], dZR[k], dh)
            dx = rs_t[k](dZR[k], dx)
    if cell.rounds == 0:  # the LSTM: nothing wrote them yet
        dx_out.copy_(dx)
        dh = dh.contiguous()
    return dh


class MogrifierLoop:
    name = "mogrifier"
    #: cell name -> option -> the values this loop computes (``...``: any); an option it does not
    #: name must keep the cell's default (read by torch_engine/capability.py)
    handles = {"mogrifier": {"bias": ..., "forget_bias": ..., "forget_bias_init": ..., "rounds": ..., "rank": ...}}

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 4
        kh, kc = keep_masks(keep, 2)
        mask = p.get("mask_hh")
        nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
        bias = combined_bias(cell, p, 4, H, x)
        lin = Product(torch.cat([p["weight_ih"], p["weight_hh"]], dim=1), B)  # [x, h] @ [W_ih, W_hh]^T
        qs = [Product(q, B) for q in mogrifier_matrices(cell, p, "q", nq)]
        rs = [Product(r, B) for r in mogrifier_matrices(cell, p, "r", nr)]
        pw = Pointwise(cell, p, x, H)
        cs = CompiledStep.of(cell, p, x, H, keep)  # the LSTM step's elementwise work in one call
        h0, c0 = state
        S = T if save else 1
        Hs, = buffers.carve(x, [(T + 1, B, H)])  # y is Hs[1:], an allocation of its own
        Hs[0] = h0
        nC = T + 1 if save else 2
        # what the backward reads (not Hs, whose h_1 .. h_T are the output): one allocation
        C, Gs, Xm, SQ, Hm, SR, XH, *Cn = buffers.carve(x, [
            (nC, B, H), (S, B, 4 * H), (x_rounds_kept(nq, nr), S, B, I), (nq, S, B, I), (max(nr, 1), S, B, H),
            (max(nr, 1), S, B, H),
            (S, B, I + H), *([(nC, B, H)] if kc is not None else [])])  # XH: the mogrified [x, h]
        C[0] = c0
        Cn = C if kc is None else Cn[0]  # the cell's c_t, before zoneout
        hnew = x.new_empty(B, H) if kh is not None else None
        tc = x.new_empty(B, H)
        zero = x.new_zeros(())  # addcmul(zero, a, b, value=2.0): 2 a b in one pass (a Python scalar
        # given to mul_ costs a conversion of its own per call)
        kern = cs.k if cs is not None else None  # the rounds' kernel comes with the step's
        step = None
        if kern is not None:
            x = x if x.stride(2) == 1 else x.contiguous()
            mask = None if mask is None else mask.contiguous()
            wq, wr = step_weights(kern, qs), step_weights(kern, rs)
            if nq and wq is not None and wr is not None:  # the products' scratch where they run on MKL
                step = (*wq, *wr, SQ, Xm, SR, Hm, XH, mask, x.new_empty(B, I), x.new_empty(B, H))
        for t in range(T):
            s_ = t if save else 0
            xh = XH[s_]
            if step is not None:
                kern.mogrify_step_forward(x, Hs, t, s_, *step)
            elif kern is not None:
                _rounds_compiled(kern, cell, qs, rs, x[t], Hs[t], Xm[:, s_], Hm[:, s_], SQ[:, s_], SR[:, s_], xh,
                                 mask)
            else:
                _rounds_eager(cell, qs, rs, x[t], Hs[t], Xm[:, s_], Hm[:, s_], SQ[:, s_], SR[:, s_], xh, mask, zero)
            a = lin(xh, bias) if bias is not None else lin(xh)
            j, jn = (t, t + 1) if save else (t % 2, (t + 1) % 2)
            cp, cn = C[j], Cn[jn]
            if cs is not None:
                cs.forward(a, Gs[s_] if save else None, cp, cn, Hs, t, C, jn)
                continue
            o = pw.forward(a, Gs[s_], cp, cn, tc)
            mix_out(Hs, t, o, tc, hnew, kh, C, cn, cp, jn, kc)
        c_n = C[T] if save else C[T % 2]
        saved = dict(Hs=Hs, C=C, Cn=Cn if kc is not None else None, Gs=Gs, Xm=Xm, SQ=SQ, Hm=Hm, SR=SR,
                     XH=XH) if save else None
        return Hs[1:], (Hs[T].clone(), c_n.clone()), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs, C, Gs, Xm, SQ, Hm, SR, XH = (saved[k] for k in ("Hs", "C", "Gs", "Xm", "SQ", "Hm", "SR", "XH"))
        Cn = C if saved.get("Cn") is None else saved["Cn"]
        (kh, kc), (nkh, nkc) = keep_masks(keep, 2, complement=True)
        mask = p.get("mask_hh")
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 4
        nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
        lin_t = Product(torch.cat([p["weight_ih"], p["weight_hh"]], dim=1).t(), B)  # da @ [W_ih, W_hh]
        Qs, Rs = mogrifier_matrices(cell, p, "q", nq), mogrifier_matrices(cell, p, "r", nr)
        qs_t = [Product(q.t(), B) for q in Qs]  # dz @ Q_k
        rs_t = [Product(r.t(), B) for r in Rs]  # dz @ R_k
        pw = Pointwise(cell, p, x, H, saved)
        cs = CompiledStep.of(cell, p, x, H, keep)
        dh_n, dc_n = dstate
        dc = torch.zeros_like(C[0]) if dc_n is None else dc_n.clone(memory_format=torch.contiguous_format)
        dh = torch.zeros_like(C[0]) if dh_n is None else dh_n.contiguous()
        if cs is not None:  # the kernel adds dy and zoneout's carried share to the step's dh
            dy = None if dy is None else dy.contiguous()
            carries = (torch.empty_like(dh), torch.empty_like(dh)) if kh is not None else (None, None)
            carry = None
        # the gradients of each step's pre-activations are kept for a chunk of L steps, whose
        # weight gradients are then one product each (L*B rows): far less memory than all T steps
        L = min(T, CHUNK)
        dA = buffers.scratch("mogrifier.dA", x, L, B, 4 * H)
        dX = x.new_empty(T, B, I)
        # the saved buffers stay untouched: a retained graph may run this backward again
        dZQ = buffers.scratch("mogrifier.dZQ", x, SQ.shape[0], L, B, I)
        dZR = buffers.scratch("mogrifier.dZR", x, SR.shape[0], L, B, H)
        W_in = (  # per name: its rounds, its dZ chunk, the inputs of round k's product over steps [a, b)
            ("q", nq, dZQ, lambda k, a, b: Hs[a:b] if k == 0 else Hm[k - 1, a:b]),
            ("r", nr, dZR, lambda k, a, b: Xm[k, a:b]),
        )
        # [W_ih, W_hh]'s gradient as one, as the step's product is one: [dW_ih, dW_hh] = dA^T [x, h]
        acc = {"weight": x.new_zeros(4 * H, I + H), "bias": x.new_zeros(4 * H)}
        for (name, n, _, _), mats in zip(W_in, (Qs, Rs)):
            if n:
                acc[name] = x.new_zeros(n, *mats[0].shape)  # the full Q_k (or R_k) of each round

        def flush(a, b):  # the weight gradients of steps [a, b), whose buffers start at slot 0
            dA2, XH2 = rows(dA[: b - a]), rows(XH[a:b])
            add_weight_grad(acc["weight"], dA2, XH2)
            acc["bias"].add_(dA2.sum(0))
            for name, n, dZ, inputs in W_in:
                for k in range(n):
                    add_weight_grad(acc[name][k], dZ[k, : b - a], inputs(k, a, b))

        zero = x.new_zeros(())
        dsq, dsr = x.new_empty(B, I), x.new_empty(B, H)  # sigma' of a round's gate
        kern = cs.k if cs is not None else None
        if kern is not None:
            x = x if x.stride(2) == 1 else x.contiguous()
            mask = None if mask is None else mask.contiguous()
        dhm = x.new_empty(B, H) if mask is not None else None  # dL/dh through state dropout's mask
        step = None
        if kern is not None:
            wq, wr = step_weights(kern, qs_t), step_weights(kern, rs_t)
            if nq and wq is not None and wr is not None:  # dL/dx, dL/dh's contiguous scratch
                step = (*wq, *wr, SQ, Xm, SR, Hm, dZQ, dZR)
                scratch = (x.new_empty(B, I), x.new_empty(B, H))
        for t in reversed(range(T)):
            start = t - t % L  # this step's chunk is [start, min(start + L, T)), its slot t - start
            da = dA[t - start]
            carry_h = None
            if cs is not None:
                out = carries[t % 2]
                cs.backward(Gs[t], C[t], Cn[t + 1], dh, carry, None if dy is None else dy[t], dc, da, out, t)
                carry = out
            else:
                if dy is not None:
                    dh = dh + dy[t]
                carry_h, dh = split_carry(dh, kh, nkh, t)  # zoneout: the kept share goes straight back
                carry_c, dc = split_carry(dc, kc, nkc, t)
                pw.backward(Gs[t], C[t], Cn[t + 1], dh, dc, da, t)
                add_carry(dc, carry_c)
            dxh = lin_t(da)  # (B, I+H)
            if step is not None:
                dh = kern.mogrify_step_backward(dxh, x, Hs, t, *step, t - start, dX, mask, *scratch)
            elif kern is not None:
                dh = _rounds_backward_compiled(kern, cell, qs_t, rs_t, dxh, I, x[t], Hs[t], Xm[:, t], Hm[:, t],
                                               SQ[:, t], SR[:, t], dZQ[:, t - start], dZR[:, t - start], dX[t], mask,
                                               dhm)
            else:
                dh = _rounds_backward_eager(cell, qs_t, rs_t, dxh, I, x[t], Hs[t], Xm[:, t], Hm[:, t], SQ[:, t],
                                            SR[:, t], dZQ[:, t - start], dZR[:, t - start], dX[t], mask, zero, dsq,
                                            dsr)
            add_carry(dh, carry_h)
            if t == start:
                flush(start, min(start + L, T))
        grads = {"weight_ih": acc["weight"][:, :I].contiguous(), "weight_hh": acc["weight"][:, I:].contiguous()}
        if cell.bias:
            grads["bias_ih"], grads["bias_hh"] = acc["bias"], acc["bias"].clone()
        for name, n, _, _ in W_in:
            if n == 0:
                continue
            per_k = acc[name]
            if cell.rank is None:
                grads[f"weight_{name}"] = per_k
            else:
                left, right = p[f"weight_{name}_left"], p[f"weight_{name}_right"]
                grads[f"weight_{name}_left"] = torch.stack([d @ right[k].t() for k, d in enumerate(per_k)])
                grads[f"weight_{name}_right"] = torch.stack([left[k].t() @ d for k, d in enumerate(per_k)])
        grads["x"] = dX
        if cs is not None and carry is not None:  # zoneout's share of dL/dh_0 past the first step
            dh = dh.add_(carry)
        return grads, (dh, dc)
